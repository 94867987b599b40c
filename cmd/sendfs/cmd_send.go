package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"

	"sendfs/btrfsread"
	"sendfs/sendgen"
)

// SendOptions are the flags of sendfs send.
type SendOptions struct {
	File          string
	Parent        string
	Size          bool
	Quiet         bool
	AllowWritable bool
}

// AddFlags defines the send flags on f.
func (o *SendOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVarP(&o.File, "file", "f", "", "write the stream to `FILE` instead of stdout; FILE appears only once complete")
	f.StringVarP(&o.Parent, "parent", "p", "", "send incrementally from `PARENT`, a read-only snapshot the receiver already has")
	f.BoolVar(&o.Size, "size", false, "print the exact stream length in bytes and exit, without generating the stream")
	f.BoolVarP(&o.Quiet, "quiet", "q", false, "no progress line on stderr")
	f.BoolVar(&o.AllowWritable, "allow-writable", false, "send a writable subvolume or parent (only safe if the filesystem is not mounted anywhere)")
}

func newSendCommand() *command {
	var opts SendOptions
	flags := pflag.NewFlagSet("send", pflag.ContinueOnError)
	opts.AddFlags(flags)
	return &command{
		Name:    "send",
		Usage:   "send [-f FILE] [-p PARENT] [--size] [-q] [--allow-writable] DEVICE... SUBVOL",
		Summary: "write the send stream of a snapshot, full or incremental",
		Help: `Write the btrfs send stream of the read-only subvolume SUBVOL, read straight
from DEVICE (a block device or an image file; give every member of a
multi-device filesystem), to stdout or to FILE. 'btrfs receive DIR' of the
stream rebuilds the snapshot, as with the kernel's 'btrfs send'. With
--parent the stream is incremental: the receiver must already have PARENT.

SUBVOL and PARENT are a path from the top level as 'sendfs list' prints it
(snaps/daily.1), a subvolume id, or a uuid.

The stream is never written to a terminal. With -f the stream goes to a
temporary file in FILE's directory (mode 0600: it holds every file of the
snapshot) that is renamed to FILE only when complete, so a failed or
interrupted send leaves no FILE and an existing FILE unchanged (a FILE that
is not a regular file, such as /dev/null or a pipe, is written directly).
A send to stdout that fails exits non-zero: discard what was received.

While sending, stderr shows the progress (bytes, rate, time left) when it
is a terminal, unless -q.

Examples:
  sendfs list disk.img
  sendfs send -f daily.1.stream disk.img snaps/daily.1
  sendfs send -p snaps/daily.1 disk.img snaps/daily.2 | btrfs receive /backup
  sendfs send --size disk.img 259`,
		Flags: flags,
		Run: func(ctx context.Context, args []string) error {
			return runSend(ctx, opts, stdConsole(), args)
		},
	}
}

// errTerminal refuses a send that would fill the user's terminal with binary.
var errTerminal = errors.New("refusing to write a binary stream to a terminal; use -f FILE or redirect")

// runSend writes (or, with --size, measures) the stream of the subvolume
// named by the last of args, on the devices named by the others.
func runSend(ctx context.Context, opts SendOptions, con *console, args []string) error {
	if len(args) < 2 {
		return usageErrorf("need DEVICE... and SUBVOL")
	}
	devices, spec := args[:len(args)-1], args[len(args)-1]
	if !opts.Size && opts.File == "" && con.OutIsTerminal {
		return errTerminal
	}
	if err := checkNotDevice(opts.File, devices); err != nil {
		return err
	}
	fsys, err := openFS(devices)
	if err != nil {
		return err
	}
	defer fsys.Close()
	stream, err := newSendStream(fsys, spec, opts)
	if err != nil {
		return err
	}
	if opts.Size {
		n, err := stream.Size(ctx)
		if err != nil {
			return fmt.Errorf("cannot compute the stream size: %w", err)
		}
		fmt.Fprintln(con.Out, n)
		return nil
	}

	var progress *progressLine
	var report func(int64)
	if con.ErrIsTerminal && !opts.Quiet {
		total, err := stream.Size(ctx)
		if err != nil {
			return fmt.Errorf("cannot compute the stream size: %w", err)
		}
		progress = newProgressLine(con.Err, total, time.Now)
		report = progress.Update
		defer progress.Clear()
	}
	write := func(w io.Writer) (int64, error) { return stream.WriteTo(ctx, w, report) }
	if opts.File != "" {
		err = writeFile(opts.File, write)
	} else {
		var n int64
		if n, err = write(con.Out); err != nil {
			err = fmt.Errorf("%w; the %s written to stdout are an incomplete stream", err, humanize.IBytes(uint64(n)))
		}
	}
	if err != nil {
		return sendError(ctx, err)
	}
	if progress != nil {
		progress.Clear()
		progress.Summary()
	}
	return nil
}

// checkNotDevice refuses a FILE that is one of the devices being read: the
// rename at the end would replace the filesystem image by its stream.
func checkNotDevice(file string, devices []string) error {
	if file == "" {
		return nil
	}
	out, err := os.Stat(file)
	if err != nil {
		return nil // FILE does not exist yet: it cannot be a device
	}
	for _, dev := range devices {
		if st, err := os.Stat(dev); err == nil && os.SameFile(st, out) {
			return fmt.Errorf("refusing to write the stream over %s, which is a DEVICE being read", file)
		}
	}
	return nil
}

// sendError names an interrupted send as such instead of "context canceled".
func sendError(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("send interrupted: %w", err)
	}
	return fmt.Errorf("send failed: %w", err)
}

// newSendStream resolves SUBVOL (spec) and --parent and checks the pair,
// with a message for each way a user can get it wrong.
func newSendStream(fsys *btrfsread.FS, spec string, opts SendOptions) (*sendgen.Stream, error) {
	child, err := findSubvol(fsys, spec, "subvolume")
	if err != nil {
		return nil, err
	}
	if !child.ReadOnly() && !opts.AllowWritable {
		return nil, fmt.Errorf("subvolume %s is not read-only; snapshot it with `btrfs subvolume snapshot -r`, or pass --allow-writable if the image is not mounted anywhere", subvolName(child))
	}
	var parent *btrfsread.Subvolume
	if opts.Parent != "" {
		if parent, err = findSubvol(fsys, opts.Parent, "parent subvolume"); err != nil {
			return nil, err
		}
		if parent.ID == child.ID {
			return nil, fmt.Errorf("parent and subvolume are both %s; an incremental send needs an older snapshot as parent", subvolName(child))
		}
		if !parent.ReadOnly() && !opts.AllowWritable {
			return nil, fmt.Errorf("parent subvolume %s is not read-only; snapshot it with `btrfs subvolume snapshot -r`, or pass --allow-writable if the image is not mounted anywhere", subvolName(parent))
		}
	}
	stream, err := sendgen.NewStream(child, parent, sendgen.Options{AllowWritable: opts.AllowWritable})
	if err != nil {
		return nil, fmt.Errorf("cannot send %s: %w", subvolName(child), err)
	}
	return stream, nil
}

// findSubvol resolves spec (path, id or uuid); role names it in errors.
func findSubvol(fsys *btrfsread.FS, spec, role string) (*btrfsread.Subvolume, error) {
	var sv *btrfsread.Subvolume
	err := fsys.Latest().Retry(func(v *btrfsread.FS) error { // a live filesystem may commit meanwhile
		var err error
		sv, err = v.FindSubvolume(spec)
		return err
	})
	if errors.Is(err, btrfsread.ErrNotFound) {
		return nil, fmt.Errorf("no %s %q on this filesystem; give its path as 'sendfs list' prints it, its id or its uuid", role, spec)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot look up %s %q: %w", role, spec, err)
	}
	return sv, nil
}

// subvolName names a subvolume in messages the way the user names it.
func subvolName(sv *btrfsread.Subvolume) string {
	if sv.ID == topLevelID {
		return "<top level> (id 5)"
	}
	return displayPath(sv.Path)
}

// writeFile runs write into path so that path never holds an incomplete
// stream: write goes to a temporary file in the same directory, which is
// synced and renamed over path only on success and removed on failure.
// Paths that are not regular files (/dev/null, a fifo) are written directly.
func writeFile(path string, write func(io.Writer) (int64, error)) error {
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return writeSpecial(path, write)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".sendfs-*")
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", path, pathErrorCause(err))
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if _, err := write(bw); err != nil {
		return fmt.Errorf("%w; %s was not written", err, path)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, pathErrorCause(err))
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, pathErrorCause(err))
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, pathErrorCause(err))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("cannot create %s: %w", path, pathErrorCause(err))
	}
	done = true
	return nil
}

// writeSpecial writes into an existing file that is not a regular file:
// replacing /dev/null by a stream would be a disaster.
func writeSpecial(path string, write func(io.Writer) (int64, error)) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", path, pathErrorCause(err))
	}
	n, err := write(f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("cannot write %s: %w", path, pathErrorCause(cerr))
	}
	if err != nil {
		return fmt.Errorf("%w; the %s written to %s are an incomplete stream", err, humanize.IBytes(uint64(n)), path)
	}
	return nil
}

// pathErrorCause drops the operation and the (temporary) file name from an
// *fs.PathError: the message names the user's FILE instead.
func pathErrorCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
