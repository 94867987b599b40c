// Package testimage builds the real btrfs filesystems the tests read:
// sparse image files formatted by mkfs.btrfs, attached to loop devices and
// mounted by the kernel. Everything a test attaches or mounts is released
// when the test ends, also when it fails. It is only for tests.
package testimage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sendfs/internal/testenv"
)

// Require stops t (a failure under CI=true, a skip elsewhere: see testenv)
// unless the named programs are installed and, with root set, the test
// runs as root (for loop devices and mount).
func Require(t testing.TB, root bool, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, tool+" is not installed")
		}
	}
	if root && os.Geteuid() != 0 {
		testenv.Unavailable(t, "needs root for loop devices and mount")
	}
}

// CommandTimeout bounds every command a test runs: a hung command fails its
// test instead of reaching go test's timeout, which would exit without
// running the cleanups (leaving mounts and loop devices).
const CommandTimeout = 10 * time.Minute

// Command is exec.Command killed after CommandTimeout; call cancel once it
// has run.
func Command(name string, args ...string) (cmd *exec.Cmd, cancel func()) {
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	cmd = exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 10 * time.Second
	return cmd, cancel
}

// RunErr runs a command and returns its stdout; the error carries the
// command line and the end of its stderr.
func RunErr(name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd, cancel := Command(name, args...)
	defer cancel()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, LastLines(stderr.String(), 20))
	}
	return stdout.String(), nil
}

// Run is RunErr that fails t when the command fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := RunErr(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// LastLines keeps the last n lines of s (error output can be long).
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// Images makes n sparse files of size bytes in dir (dev0.img, dev1.img, …),
// the devices of one filesystem.
func Images(t testing.TB, dir string, n int, size int64) []string {
	t.Helper()
	imgs := make([]string, n)
	for i := range imgs {
		imgs[i] = filepath.Join(dir, fmt.Sprintf("dev%d.img", i))
		f, err := os.Create(imgs[i])
		if err == nil {
			err = f.Truncate(size)
			f.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return imgs
}

// Mkfs formats devs (image files or loop devices) as one btrfs filesystem,
// with the extra mkfs.btrfs arguments args (e.g. "-d", "raid1",
// "--rootdir", DIR).
func Mkfs(t testing.TB, args []string, devs ...string) {
	t.Helper()
	Require(t, false, "mkfs.btrfs")
	Run(t, "mkfs.btrfs", append(append([]string{"-q", "-f"}, args...), devs...)...)
}

// FS is a btrfs filesystem whose image files are attached to loop devices,
// mounted at Mnt while Mount has mounted it.
type FS struct {
	Images    []string // the image files, in device order
	Loops     []string // their loop devices
	Mnt       string   // the mount point ("" if never mounted)
	MountOpts string   // mount -o options, e.g. "compress=zstd"
	mounted   bool
}

// Attach attaches every image of one filesystem to a loop device (read-only
// if ro); mnt is where Mount will mount it (created if missing, "" if the
// test mounts nothing). Release runs when the test ends.
func Attach(t testing.TB, imgs []string, mnt string, ro bool) *FS {
	t.Helper()
	Require(t, true, "losetup", "mount", "umount")
	if mnt != "" {
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fs := &FS{Images: imgs, Mnt: mnt}
	t.Cleanup(func() { fs.Release(t) })
	args := []string{"--find", "--show"}
	if ro {
		args = append(args, "--read-only")
	}
	for _, img := range imgs {
		fs.Loops = append(fs.Loops, strings.TrimSpace(Run(t, "losetup", append(args, img)...)))
	}
	return fs
}

// New makes a btrfs filesystem of n sparse images of size bytes in dir,
// formatted with mkfs arguments mkfsArgs, and mounts it at dir/mnt.
func New(t testing.TB, dir string, n int, size int64, mkfsArgs []string, mountOpts string) *FS {
	t.Helper()
	Require(t, true, "mkfs.btrfs")
	fs := Attach(t, Images(t, dir, n, size), filepath.Join(dir, "mnt"), false)
	fs.MountOpts = mountOpts
	Mkfs(t, mkfsArgs, fs.Loops...)
	fs.Mount(t, false)
	return fs
}

// Mount mounts the filesystem (read-only if ro) at Mnt, naming every loop
// device, so that the kernel finds all members.
func (fs *FS) Mount(t testing.TB, ro bool) {
	t.Helper()
	var opts []string
	if ro {
		opts = append(opts, "ro")
	}
	if fs.MountOpts != "" {
		opts = append(opts, fs.MountOpts)
	}
	for _, l := range fs.Loops[1:] {
		opts = append(opts, "device="+l)
	}
	args := []string{"-t", "btrfs"}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, ","))
	}
	Run(t, "mount", append(args, fs.Loops[0], fs.Mnt)...)
	fs.mounted = true
}

// Unmount unmounts the filesystem and leaves its loop devices attached, so
// that it can be mounted again.
func (fs *FS) Unmount(t testing.TB) {
	t.Helper()
	if !fs.mounted {
		return
	}
	Run(t, "umount", fs.Mnt)
	fs.mounted = false
}

// Release unmounts the filesystem (lazily if it is busy) and detaches its
// loop devices, so that the images can be read as they are on disk. It
// reports errors without stopping the test, so that the other cleanups
// still run; a second call does nothing.
func (fs *FS) Release(t testing.TB) {
	if fs.mounted {
		if _, err := RunErr("umount", fs.Mnt); err != nil {
			if _, err2 := RunErr("umount", "-l", fs.Mnt); err2 != nil {
				t.Errorf("cleanup: %v; lazy: %v", err, err2)
			}
		}
		fs.mounted = false
	}
	for _, l := range fs.Loops {
		// Forget the device in the kernel's btrfs device list, so that a
		// later filesystem on the same loop device is not taken for this
		// one.
		RunErr("btrfs", "device", "scan", "--forget", l)
		if _, err := RunErr("losetup", "-d", l); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	fs.Loops = nil
}
