package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

// runCLI runs a command line through dispatch (and its panic guard) with
// buffers for stdout and stderr.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runGuarded(context.Background(), &console{Out: &out, Err: &errOut}, args)
	return code, out.String(), errOut.String()
}

func TestDispatchHelpAndUsage(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		stdout     []string // substrings expected on stdout
		stderr     []string // substrings expected on stderr
		emptyOut   bool
		emptyError bool
	}{
		{args: nil, code: exitUsage, stderr: []string{"Usage: sendfs COMMAND", "list", "send", "EXIT STATUS"}, emptyOut: true},
		{args: []string{"--help"}, code: exitOK, stdout: []string{"Usage: sendfs COMMAND", "  list ", "  send ", "EXIT STATUS"}, emptyError: true},
		{args: []string{"-h"}, code: exitOK, stdout: []string{"Usage: sendfs COMMAND"}, emptyError: true},
		{args: []string{"list", "--help"}, code: exitOK, stdout: []string{"Usage: sendfs list [--json] [--degraded] [--scan] DEVICE...", "--json", "EXIT STATUS"}, emptyError: true},
		{args: []string{"send", "-h"}, code: exitOK, stdout: []string{"Usage: sendfs send", "-f, --file FILE", "-p, --parent PARENT", "--size", "-q, --quiet", "--allow-writable", "EXIT STATUS"}, emptyError: true},
		{args: []string{"help", "send"}, code: exitOK, stdout: []string{"Usage: sendfs send"}, emptyError: true},
		{args: []string{"--version"}, code: exitOK, stdout: []string{"sendfs "}, emptyError: true},
		{args: []string{"frobnicate"}, code: exitUsage, stderr: []string{`sendfs: unknown command "frobnicate"`}, emptyOut: true},
		{args: []string{"--bogus"}, code: exitUsage, stderr: []string{"sendfs: unknown flag --bogus"}, emptyOut: true},
		{args: []string{"list", "--bogus", "x.img"}, code: exitUsage, stderr: []string{"sendfs list: unknown flag: --bogus", "Usage: sendfs list"}, emptyOut: true},
		{args: []string{"send", "-z", "a", "b"}, code: exitUsage, stderr: []string{"sendfs send: unknown shorthand flag: 'z'"}, emptyOut: true},
		{args: []string{"send", "-f"}, code: exitUsage, stderr: []string{"flag needs an argument"}, emptyOut: true},
		{args: []string{"list"}, code: exitUsage, stderr: []string{"sendfs list: no DEVICE given", "Run 'sendfs list --help'"}, emptyOut: true},
		{args: []string{"send", "only.img"}, code: exitUsage, stderr: []string{"sendfs send: need DEVICE... and SUBVOL"}, emptyOut: true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if tc.emptyOut && stdout != "" {
				t.Errorf("stdout should be empty, got:\n%s", stdout)
			}
			if tc.emptyError && stderr != "" {
				t.Errorf("stderr should be empty, got:\n%s", stderr)
			}
		})
	}
}

// TestEveryCommandHelp checks each command's help shape: usage line, text,
// and the exit statuses, with flag descriptions wrapped to 80 columns.
func TestEveryCommandHelp(t *testing.T) {
	for _, newCmd := range commands {
		cmd := newCmd()
		code, stdout, _ := runCLI(t, cmd.Name, "--help")
		if code != exitOK {
			t.Errorf("%s --help: exit status %d", cmd.Name, code)
		}
		if !strings.HasPrefix(stdout, "Usage: sendfs "+cmd.Name) || !strings.Contains(stdout, exitStatusHelp) {
			t.Errorf("%s --help lacks the usage line or EXIT STATUS:\n%s", cmd.Name, stdout)
		}
		if cmd.Flags != nil {
			for _, line := range strings.Split(flagUsages(cmd.Flags), "\n") {
				if len(line) > 80 && strings.Contains(strings.TrimSpace(line), " ") {
					t.Errorf("%s: flag help line longer than 80 columns: %q", cmd.Name, line)
				}
			}
		}
	}
}

func TestFailureIsOneLine(t *testing.T) {
	var errOut bytes.Buffer
	con := &console{Out: &bytes.Buffer{}, Err: &errOut}
	restore := addCommand(&command{Name: "fail", Run: func(context.Context, []string) error {
		return errors.New("device dev1.img:\n  read failed")
	}})
	defer restore()
	if code := runGuarded(context.Background(), con, []string{"fail"}); code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	if got, want := errOut.String(), "sendfs: device dev1.img: read failed\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
}

func TestPanicIsReportedNotDumped(t *testing.T) {
	restore := addCommand(&command{Name: "boom", Run: func(context.Context, []string) error {
		panic("index out of range")
	}})
	defer restore()

	t.Setenv("SENDFS_DEBUG", "")
	code, _, stderr := runCLI(t, "boom")
	if code != exitFailure || !strings.Contains(stderr, "sendfs: internal error: index out of range") ||
		!strings.Contains(stderr, "SENDFS_DEBUG=1") || strings.Contains(stderr, "goroutine") {
		t.Errorf("exit status %d, stderr:\n%s", code, stderr)
	}

	t.Setenv("SENDFS_DEBUG", "1")
	_, _, stderr = runCLI(t, "boom")
	if !strings.Contains(stderr, "goroutine") {
		t.Errorf("SENDFS_DEBUG=1 should print the stack, got:\n%s", stderr)
	}
}

// addCommand appends cmd to the command table until the returned func runs.
func addCommand(cmd *command) (restore func()) {
	saved := commands
	commands = append(commands[:len(commands):len(commands)], func() *command { return cmd })
	return func() { commands = saved }
}
