// Command sendfs serves btrfs send streams generated in userspace from a
// btrfs device or image: as a CLI (send, list) and as a FUSE mount.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
)

// command is one subcommand. Each lives in its own cmd_<name>.go file and is
// built by a constructor listed in commands.
type command struct {
	Name    string         // "mount"
	Usage   string         // "mount [flags] DEVICE... MOUNTPOINT"
	Summary string         // one line for the top-level help
	Help    string         // longer text printed by --help after the usage line
	Flags   *pflag.FlagSet // the command's flags, already defined
	Run     func(ctx context.Context, args []string) error
}

// commands lists the subcommands in help order.
var commands = []func() *command{newListCommand, newSendCommand, newDiffCommand, newMountCommand}

func main() {
	os.Exit(runMain(os.Args[1:]))
}

// runMain runs the command line args and returns the exit status. The
// context it hands to commands is cancelled by SIGINT or SIGTERM; a second
// signal kills the process the default way, in case a command is stuck.
func runMain(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	return runGuarded(ctx, stdConsole(), args)
}

// runGuarded is dispatch with a last resort against panics: a bug must not
// greet the user with a goroutine dump.
func runGuarded(ctx context.Context, con *console, args []string) (code int) {
	defer func() {
		if r := recover(); r != nil {
			code = reportPanic(con.Err, r)
		}
	}()
	return dispatch(ctx, con, args)
}

// reportPanic is the last resort for a bug: one line for the user, the stack
// only when SENDFS_DEBUG=1 asks for it.
func reportPanic(w io.Writer, r any) int {
	fmt.Fprintf(w, "sendfs: internal error: %v\n", r)
	if os.Getenv("SENDFS_DEBUG") == "1" {
		w.Write(debug.Stack())
	} else {
		fmt.Fprintln(w, "sendfs: this is a bug; run again with SENDFS_DEBUG=1 for a stack trace and report it")
	}
	return exitFailure
}

// dispatch parses the command line, runs the command and prints its error.
// Help asked for goes to con.Out; help after a usage error goes to con.Err.
func dispatch(ctx context.Context, con *console, args []string) int {
	if len(args) == 0 {
		printUsage(con.Err)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			return dispatch(ctx, con, []string{args[1], "--help"})
		}
		printUsage(con.Out)
		return exitOK
	case "--version":
		fmt.Fprintln(con.Out, versionLine())
		return exitOK
	}
	if strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(con.Err, "sendfs: unknown flag %s\nRun 'sendfs --help' for usage.\n", args[0])
		return exitUsage
	}
	if isHelperCall(args) {
		return runHelper(ctx, con, args)
	}
	cmd := findCommand(args[0])
	if cmd == nil {
		fmt.Fprintf(con.Err, "sendfs: unknown command %q\nRun 'sendfs --help' for the list of commands.\n", args[0])
		return exitUsage
	}
	if cmd.Flags == nil {
		cmd.Flags = pflag.NewFlagSet(cmd.Name, pflag.ContinueOnError)
	}
	// Parse errors come back to us: never let pflag print or exit.
	cmd.Flags.Init(cmd.Name, pflag.ContinueOnError)
	cmd.Flags.SetOutput(io.Discard)
	cmd.Flags.Usage = func() {}
	err := cmd.Flags.Parse(args[1:])
	switch {
	case errors.Is(err, pflag.ErrHelp):
		printCommandHelp(con.Out, cmd)
		return exitOK
	case err != nil:
		err = &exitError{err: err, code: exitUsage}
	default:
		err = cmd.Run(ctx, cmd.Flags.Args())
	}
	switch exitCode(err) {
	case exitOK:
	case exitUsage:
		fmt.Fprintf(con.Err, "sendfs %s: %v\nUsage: sendfs %s\nRun 'sendfs %s --help' for more.\n",
			cmd.Name, err, cmd.Usage, cmd.Name)
	default:
		fmt.Fprintln(con.Err, errorLine(err))
	}
	return exitCode(err)
}

// findCommand builds the command called name, or returns nil.
func findCommand(name string) *command {
	for _, newCmd := range commands {
		if cmd := newCmd(); cmd.Name == name {
			return cmd
		}
	}
	return nil
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `sendfs generates btrfs send streams in userspace, reading a btrfs filesystem
straight from its device(s) or image file(s): no mount, no kernel send.

Usage: sendfs COMMAND [flags] ARGS...

Commands:
`)
	for _, newCmd := range commands {
		cmd := newCmd()
		fmt.Fprintf(w, "  %-7s %s\n", cmd.Name, cmd.Summary)
	}
	fmt.Fprintf(w, `
Run 'sendfs COMMAND --help' for a command's arguments and flags,
'sendfs --version' for the version.

%s
`, exitStatusHelp)
}

func printCommandHelp(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "Usage: sendfs %s\n\n%s\n", cmd.Usage, cmd.Help)
	if flags := flagUsages(cmd.Flags); flags != "" {
		fmt.Fprintf(w, "\nFlags:\n%s", flags)
	}
	fmt.Fprintf(w, "\n%s\n", exitStatusHelp)
}

// flagUsages lists the flags one per line, the description wrapped to fit
// 80 columns. (pflag's own listing marks every bool "[=true|false]".)
func flagUsages(flags *pflag.FlagSet) string {
	type row struct{ name, usage string }
	var rows []row
	width := 0
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		name := "    --" + f.Name
		if f.Shorthand != "" {
			name = "-" + f.Shorthand + ", --" + f.Name
		}
		varname, usage := pflag.UnquoteUsage(f)
		if f.Value.Type() != "bool" && varname != "" {
			name += " " + varname
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		rows = append(rows, row{name, usage})
		width = max(width, len(name))
	})
	var b strings.Builder
	indent := strings.Repeat(" ", 2+width+3)
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-*s   ", width, r.name)
		col := len(indent)
		for i, word := range strings.Fields(r.usage) {
			if i > 0 && col+1+len(word) > 80 {
				b.WriteString("\n" + indent)
				col = len(indent)
			} else if i > 0 {
				b.WriteByte(' ')
				col++
			}
			b.WriteString(word)
			col += len(word)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// versionLine names the module version and, for a build from a checkout,
// the commit it was built from.
func versionLine() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "sendfs (unknown version)"
	}
	line := "sendfs " + info.Main.Version
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		line += " commit " + rev
		if settings["vcs.modified"] == "true" {
			line += " (modified)"
		}
	}
	return line + " " + info.GoVersion
}
