package main

// Helpers shared by every command: exit statuses, the console a command
// talks to, and opening the filesystem with errors a user can act on.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

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

// openFS opens the filesystem whose member devices or image files are paths.
// btrfsread's errors already name the device and what is wrong with it (not
// btrfs, truncated, a member missing, an unsupported feature); only a file
// that cannot be opened at all is reworded. What Open survived (a bad
// primary superblock) is printed on stderr as a warning.
func openFS(paths []string) (*btrfsread.FS, error) {
	if len(paths) == 0 {
		return nil, usageErrorf("no DEVICE given")
	}
	fsys, err := btrfsread.Open(paths...)
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Op == "open" {
		return nil, fmt.Errorf("cannot open %s: %w", pe.Path, pe.Err)
	}
	if err == nil {
		for _, w := range fsys.Warnings() {
			fmt.Fprintln(os.Stderr, "sendfs: warning: "+w)
		}
	}
	return fsys, err
}
