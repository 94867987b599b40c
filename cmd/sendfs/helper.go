package main

// sendfs as a mount(8) helper. For `mount -t fuse.sendfs SOURCE DIR -o OPTS`
// and the same line in /etc/fstab, mount.fuse3 runs
//
//	sendfs SOURCE DIR -o OPTS
//
// which mounts in the background and returns once the tree answers: the
// helper starts `sendfs mount` as a detached child, waits for its READY=1
// on a private notification socket (the same protocol systemd's Type=notify
// uses), and exits 0, or with the child's status and message if mounting
// failed.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// isHelperCall reports whether args (without the program name) are a mount
// helper's command line: SOURCE DIR with -o, or a SOURCE path, rather than
// a command.
func isHelperCall(args []string) bool {
	if len(args) < 2 || findCommand(args[0]) != nil || strings.HasPrefix(args[0], "-") {
		return false
	}
	return strings.ContainsAny(args[0], "/:") || slices.ContainsFunc(args[1:], func(a string) bool { return strings.HasPrefix(a, "-o") })
}

// genericMountOptions are options of mount(8) and fstab that are not for
// sendfs: accepted and ignored. The mount is always read-only (mount(8)
// passes rw unless told ro).
var genericMountOptions = map[string]bool{
	"ro": true, "rw": true, "defaults": true, "auto": true, "noauto": true, "nofail": true, "_netdev": true,
	"user": true, "users": true, "nouser": true, "owner": true, "group": true,
	"atime": true, "noatime": true, "relatime": true, "norelatime": true, "strictatime": true,
	"nostrictatime": true, "lazytime": true, "nolazytime": true, "diratime": true, "nodiratime": true,
	"exec": true, "noexec": true, "suid": true, "nosuid": true, "dev": true, "nodev": true,
	"sync": true, "async": true, "dirsync": true, "silent": true, "loud": true,
}

// helperArgs turns a helper command line into the arguments of `sendfs
// mount`: SOURCE (DEVICE[:DEVICE...]) and DIR, every -o option mapped to the
// mount flag of the same name ('_' for '-'). fake is mount's -f (check, do
// not mount).
func helperArgs(args []string) (mountArgs []string, fake bool, err error) {
	flags := pflag.NewFlagSet("mount", pflag.ContinueOnError)
	var opts MountOptions
	opts.AddFlags(flags)
	var pos, options []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o":
			if i+1 == len(args) {
				return nil, false, usageErrorf("-o needs a list of options")
			}
			i++
			options = append(options, strings.Split(args[i], ",")...)
		case strings.HasPrefix(a, "-o"):
			options = append(options, strings.Split(a[2:], ",")...)
		case a == "-f":
			fake = true
		case a == "-n" || a == "-v" || a == "-s": // no mtab, verbose, sloppy: nothing to do
		case strings.HasPrefix(a, "-"):
			return nil, false, usageErrorf("unknown mount helper flag %s", a)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, false, usageErrorf("a mount helper call is SOURCE MOUNTPOINT [-o OPTIONS], got %d arguments", len(pos))
	}
	for _, o := range options {
		key, value, hasValue := strings.Cut(o, "=")
		switch {
		case key == "" || genericMountOptions[key] || strings.HasPrefix(key, "x-") || key == "comment":
			continue
		}
		f := flags.Lookup(strings.ReplaceAll(key, "_", "-"))
		if f == nil {
			return nil, false, usageErrorf("unknown mount option %q", key)
		}
		if !hasValue {
			if f.Value.Type() != "bool" {
				return nil, false, usageErrorf("mount option %s needs a value (%s=...)", key, key)
			}
			value = "true"
		}
		if err := flags.Set(f.Name, value); err != nil {
			return nil, false, usageErrorf("mount option %s=%s: %v", key, value, err)
		}
		mountArgs = append(mountArgs, "--"+f.Name+"="+value)
	}
	return append(append(mountArgs, sourceDevices(pos[0])...), pos[1]), fake, nil
}

// sourceDevices splits a helper SOURCE into its devices: DEVICE[:DEVICE...],
// unless SOURCE itself names a file.
func sourceDevices(source string) []string {
	if _, err := os.Stat(source); err == nil {
		return []string{source}
	}
	return strings.Split(source, ":")
}

// runHelper mounts in the background as mount(8) expects of a helper and
// returns the exit status.
func runHelper(ctx context.Context, con *console, args []string) int {
	mountArgs, fake, err := helperArgs(args)
	if err == nil && !fake {
		err = startDetached(ctx, con, append([]string{"mount"}, mountArgs...))
	}
	if err != nil && !errors.Is(err, errAlreadyReported) {
		fmt.Fprintln(con.Err, errorLine(err))
	}
	return exitCode(err)
}

// logFDEnv names the descriptor a detached `sendfs mount` logs to.
const logFDEnv = "SENDFS_LOG_FD"

// startDetached starts `sendfs args...` in a new session, relays what it
// writes on stderr until it is ready, and returns once it notified READY=1,
// or with its error if it exited first. The child then logs to the journal
// when stderr is the journal, else nowhere.
func startDetached(ctx context.Context, con *console, args []string) error {
	var nonce [8]byte
	rand.Read(nonce[:])
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@sendfs-helper-" + hex.EncodeToString(nonce[:]), Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("cannot open a notification socket: %w", err)
	}
	defer sock.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logTo, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer logTo.Close()
	if f, ok := con.Err.(*os.File); ok && isJournal(f) {
		logTo = f
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer errR.Close()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock.LocalAddr().String(), logFDEnv+"=3")
	cmd.Stderr = errW
	cmd.ExtraFiles = []*os.File{logTo}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	errW.Close()
	if err != nil {
		return err
	}
	relayed := make(chan error, 1)
	go func() { // the child's messages until it is ready: why it failed
		_, err := io.Copy(con.Err, errR)
		relayed <- err
	}()
	ready := make(chan error, 1)
	go func() { ready <- waitReady(sock) }()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-ready:
		<-relayed
		cmd.Process.Release()
		return err
	case err := <-exited:
		<-relayed
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return &exitError{err: errAlreadyReported, code: ee.ExitCode()}
		}
		return fmt.Errorf("sendfs mount ended before the tree was ready: %v", err)
	case <-ctx.Done():
		cmd.Process.Signal(unix.SIGTERM)
		return fmt.Errorf("interrupted while waiting for the mount: %w", context.Cause(ctx))
	}
}

// errAlreadyReported ends the helper with the child's status: the child
// printed its own message.
var errAlreadyReported = errors.New("")

// waitReady reads notifications until READY=1.
func waitReady(sock *net.UnixConn) error {
	buf := make([]byte, 4096)
	for {
		n, err := sock.Read(buf)
		if err != nil {
			return fmt.Errorf("reading the readiness notification: %w", err)
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if line == "READY=1" {
				return nil
			}
		}
	}
}

// isJournal reports whether f is the journal stream systemd connected the
// process to ($JOURNAL_STREAM names its device and inode).
func isJournal(f *os.File) bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return false
	}
	return strconv.FormatUint(st.Dev, 10) == dev && strconv.FormatUint(st.Ino, 10) == ino
}

// notify sends state to the service manager named by $NOTIFY_SOCKET
// (systemd's sd_notify protocol: one datagram of NAME=VALUE lines); it does
// nothing when the variable is unset.
func notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("cannot notify the service manager at %s: %w", addr, err)
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// detachedLog is the log destination a detached mount was given (see
// startDetached), or nil when sendfs runs in the foreground.
func detachedLog() *os.File {
	fd, err := strconv.Atoi(os.Getenv(logFDEnv))
	if err != nil || fd < 3 {
		return nil
	}
	return os.NewFile(uintptr(fd), "log")
}

// detachStderr points stderr at the log of a detached mount once it is
// ready: the helper that relayed it has exited.
func detachStderr(log *os.File) error {
	if log == nil {
		return nil
	}
	return unix.Dup2(int(log.Fd()), 2)
}

// ready is the end of mounting: once the tree answers, it logs where it
// serves, moves stderr to a detached mount's log and notifies READY=1.
func ready(mountpoint string, snapshots int, detached *os.File, log *slog.Logger) error {
	if _, err := os.Stat(filepath.Join(mountpoint, "snapshots")); err != nil {
		return fmt.Errorf("the mount at %s does not answer: %w", mountpoint, err)
	}
	log.Info("serving send streams", "mountpoint", mountpoint, "snapshots", snapshots,
		"stop", "Ctrl-C, umount or fusermount3 -u "+mountpoint)
	if err := detachStderr(detached); err != nil {
		return err
	}
	err := notify(fmt.Sprintf("READY=1\nSTATUS=serving %d snapshots at %s", snapshots, mountpoint))
	if err != nil && detached == nil {
		// A service manager that cannot be told is not a reason to stop
		// serving; the mount helper waiting for it is (it would wait forever).
		log.Warn("readiness not notified", "err", err)
		return nil
	}
	return err
}

// stopping tells the service manager the mount is going away.
func stopping(log *slog.Logger) {
	if err := notify("STOPPING=1"); err != nil {
		log.Warn("notification not sent", "err", err)
	}
}
