// Command sendfs serves btrfs send streams generated in userspace from a
// btrfs device or image: as a CLI (send, list) and as a FUSE mount.
package main

import (
	"context"
	"os"

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
var commands = []func() *command{newListCommand, newSendCommand, newMountCommand}

func main() {
	os.Exit(runMain(os.Args[1:]))
}

// runMain is replaced by the CLI owner; it dispatches to a command and maps
// errors to exit codes.
func runMain(args []string) int { panic("unimplemented") }
