package main

// Helpers shared by every command: exit statuses, the console a command
// talks to, and opening the filesystem with errors a user can act on.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"sendfs/btrfsread"
)

// Exit statuses. Every command's help prints exitStatusHelp, so keep the two
// in step.
const (
	exitOK      = 0 // the command did what was asked
	exitFailure = 1 // it failed; stderr says why in one sentence
	exitUsage   = 2 // the command line is wrong
)

const exitStatusHelp = `EXIT STATUS
  0  success
  1  failure (not a btrfs filesystem, missing device, unknown subvolume,
     I/O error, ...): one line on stderr says what failed
  2  usage error: unknown command or flag, wrong number of arguments`

// exitError carries the exit status that err must end the process with.
// Errors of any other type end it with exitFailure.
type exitError struct {
	err  error
	code int
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports a wrong command line (exit status 2).
func usageErrorf(format string, args ...any) error {
	return &exitError{err: fmt.Errorf(format, args...), code: exitUsage}
}

// exitCode maps the error a command returned to the process exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailure
}

// errorLine turns err into the single line printed on stderr: error texts
// that span lines (wrapped subprocess output, joined errors) are folded.
func errorLine(err error) string {
	return "sendfs: " + strings.Join(strings.Fields(err.Error()), " ")
}

// console is where a command writes: the process's stdout and stderr, or
// buffers in tests, which also decide what counts as a terminal.
type console struct {
	Out           io.Writer
	Err           io.Writer
	OutIsTerminal bool
	ErrIsTerminal bool
}

// stdConsole is the process's own stdout and stderr.
func stdConsole() *console {
	return &console{
		Out:           os.Stdout,
		Err:           os.Stderr,
		OutIsTerminal: isTerminal(os.Stdout),
		ErrIsTerminal: isTerminal(os.Stderr),
	}
}

// isTerminal reports whether f is a terminal (a tty answers TCGETS).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// devicesHelp is the paragraph of every command's help about --scan and
// --degraded.
const devicesHelp = `With --scan one member is enough: the other members are found by their
superblocks among the image files beside it, the files of any DEVICE that
is a directory, and the block devices. With --degraded members may be
missing: blocks are read from the other mirrors or rebuilt from RAID5/6
parity, and used only if they match their checksums; what only the
missing members held fails the streams that need it, naming the missing
devids. A member that fails a read is read around the same way, and the
failed range is logged on stderr.`

// DeviceOptions are the flags of every command that reads a filesystem:
// how its DEVICE... arguments are assembled.
type DeviceOptions struct {
	Degraded bool
	Scan     bool
}

// AddFlags defines the device flags on f.
func (o *DeviceOptions) AddFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.Degraded, "degraded", false, "read with member devices missing, from the copies and parity on the others")
	f.BoolVar(&o.Scan, "scan", false, "find the other member devices: image files beside DEVICE or in a DEVICE that is a directory, and block devices")
}

// openFS opens the filesystem whose member devices or image files are paths.
// btrfsread's errors already name the device and what is wrong with it (not
// btrfs, truncated, a member missing, an unsupported feature); only a file
// that cannot be opened at all is reworded, and a missing member gets the
// flags that help. What Open survived (a bad primary superblock, missing
// members with --degraded) is printed on stderr as a warning; later
// warnings (read errors read around) and notes (members found) go to log.
func openFS(paths []string, o DeviceOptions, log *slog.Logger) (*btrfsread.FS, error) {
	if len(paths) == 0 {
		return nil, usageErrorf("no DEVICE given")
	}
	if o.Scan {
		var err error
		if paths, err = (btrfsread.ScanOptions{BlockDevices: true, Log: log}).FindMembers(paths); err != nil {
			return nil, err
		}
	}
	fsys, err := btrfsread.OpenOptions{Degraded: o.Degraded, Log: log}.Open(paths...)
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe) && pe.Op == "open":
		return nil, fmt.Errorf("cannot open %s: %w", pe.Path, pe.Err)
	case errors.Is(err, btrfsread.ErrMissingDevice) && !o.Degraded && o.Scan:
		return nil, fmt.Errorf("%w; --scan did not find every member: pass the others, or --degraded to read without them", err)
	case errors.Is(err, btrfsread.ErrMissingDevice) && !o.Degraded:
		return nil, fmt.Errorf("%w; pass all member devices, --scan to find them, or --degraded to read without them", err)
	}
	if err == nil {
		for _, w := range fsys.Warnings() {
			fmt.Fprintln(os.Stderr, "sendfs: warning: "+w)
		}
	}
	return fsys, err
}

// cliLogger logs notes and warnings to w without timestamps, for the
// commands whose stdout is their output.
func cliLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}
