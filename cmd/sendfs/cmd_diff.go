package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/pflag"

	"sendfs/snapdiff"
)

// DiffOptions are the flags of sendfs diff.
type DiffOptions struct {
	DeviceOptions
	Parent        string
	JSON          bool
	AllowWritable bool
}

// AddFlags defines the diff flags on f.
func (o *DiffOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVarP(&o.Parent, "parent", "p", "", "compare with `PARENT`, an older snapshot (without it, everything is added)")
	f.BoolVar(&o.JSON, "json", false, "print a JSON array of changes instead of a table")
	f.BoolVar(&o.AllowWritable, "allow-writable", false, "accept a writable subvolume or parent (only safe if the filesystem is not mounted anywhere)")
	o.DeviceOptions.AddFlags(f)
}

func newDiffCommand() *command {
	var opts DiffOptions
	flags := pflag.NewFlagSet("diff", pflag.ContinueOnError)
	opts.AddFlags(flags)
	return &command{
		Name:    "diff",
		Usage:   "diff [-p PARENT] [--json] [--allow-writable] [--degraded] [--scan] DEVICE... SUBVOL",
		Summary: "list what changed between two snapshots, path by path",
		Help: `List what changed from the snapshot PARENT to the snapshot SUBVOL, one path
per line, sorted by path: added, deleted, renamed (from -> to, the
subvolume-relative paths), modified (data rewritten, with the sizes before
and after) and metadata (only mode, owner, mtime or xattrs changed). A
renamed directory is one line: what it holds moved with it. Directories
whose only change is the time their entries changed are not listed.

It is computed by the engine of 'sendfs send -p PARENT' over metadata
only (no file data is read), so it costs what the incremental stream's
metadata costs: a diff of two snapshots that differ in ten files is
instant whatever their size. "modified" means the file's data was
rewritten: its extents changed, which is almost always new content.

SUBVOL and PARENT are a path from the top level, an id or a uuid, as for
send.

--json prints an array of objects: kind (added, deleted, renamed,
modified, metadata), path ("." is the subvolume root), from (renamed),
type (file, dir, symlink, fifo, socket, char, block), size and old_size
(bytes, files and symlinks), data (true when the data changed), metadata
(a list of mode, owner, mtime, xattrs).

` + devicesHelp + `

Examples:
  sendfs diff -p snaps/home.1 disk.img snaps/home.2
  sendfs diff --json -p 256 disk.img 257 | jq -r '.[] | select(.kind == "added") | .path'`,
		Flags: flags,
		Run: func(ctx context.Context, args []string) error {
			return runDiff(ctx, opts, stdConsole(), args)
		},
	}
}

// runDiff prints the changes between two snapshots of the devices args.
func runDiff(ctx context.Context, opts DiffOptions, con *console, args []string) error {
	if len(args) < 2 {
		return usageErrorf("need DEVICE... and SUBVOL")
	}
	fsys, err := openFS(args[:len(args)-1], opts.DeviceOptions, cliLogger(con.Err))
	if err != nil {
		return err
	}
	defer fsys.Close()
	set, err := newSendStreams(fsys, args[len(args)-1:], SendOptions{Parent: opts.Parent, AllowWritable: opts.AllowWritable})
	if err != nil {
		return err
	}
	changes, err := snapdiff.Compute(ctx, set.streams[0])
	if err != nil {
		return fmt.Errorf("diff failed: %w", err)
	}
	if opts.JSON {
		if changes == nil {
			changes = []snapdiff.Change{}
		}
		enc := json.NewEncoder(con.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(changes)
	}
	return snapdiff.WriteText(con.Out, changes)
}
