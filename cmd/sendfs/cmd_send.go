package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"

	"sendfs/btrfsread"
	"sendfs/sendgen"
)

// SendOptions are the flags of sendfs send.
type SendOptions struct {
	DeviceOptions
	File           string
	Parent         string
	CloneSources   []string
	Proto          int
	ProtoSet       bool // --proto was given (else 1, or 2 with --compressed-data)
	CompressedData bool
	NoData         bool
	OneStream      bool
	Size           bool
	Quiet          bool
	AllowWritable  bool
}

// AddFlags defines the send flags on f.
func (o *SendOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVarP(&o.File, "file", "f", "", "write the stream to `FILE` instead of stdout; FILE appears only once complete")
	f.StringVarP(&o.Parent, "parent", "p", "", "send incrementally from `PARENT`, a read-only snapshot the receiver already has")
	f.StringArrayVarP(&o.CloneSources, "clone-src", "c", nil, "let the stream clone data from `SUBVOL`, a read-only snapshot the receiver already has (repeatable; without -p one of them becomes the parent)")
	f.IntVar(&o.Proto, "proto", 1, "write protocol version `N`: 1, 2, or 0 for the highest sendfs supports (2)")
	f.BoolVar(&o.CompressedData, "compressed-data", false, "send compressed extents as stored, without decompressing them (implies --proto 2)")
	f.BoolVar(&o.NoData, "no-data", false, "send no file data, only where it changed: the stream shows the changes but cannot rebuild the files")
	f.BoolVarP(&o.OneStream, "one-stream", "e", false, "with several SUBVOLs, write them as one stream (one header, one END) instead of one stream each")
	f.BoolVar(&o.Size, "size", false, "print the exact stream length in bytes and exit, without generating the stream")
	f.BoolVarP(&o.Quiet, "quiet", "q", false, "no progress line on stderr")
	f.BoolVar(&o.AllowWritable, "allow-writable", false, "send a writable subvolume, parent or clone source (only safe if the filesystem is not mounted anywhere)")
	o.DeviceOptions.AddFlags(f)
}

// protocol resolves --proto and --compressed-data.
func (o SendOptions) protocol() (int, error) {
	return resolveProtocol(o.Proto, o.ProtoSet, o.CompressedData)
}

// resolveProtocol resolves --proto (proto, if set) and --compressed-data as
// btrfs send does: 1 by default, 2 with --compressed-data, 0 the highest.
func resolveProtocol(proto int, set, compressed bool) (int, error) {
	switch {
	case !set && compressed:
		proto = 2
	case !set:
		proto = 1
	case proto == 0:
		proto = sendgen.MaxProtocol
	}
	if proto < 1 || proto > sendgen.MaxProtocol {
		return 0, usageErrorf("protocol version %d is not supported; use --proto 1, 2 or 0 (the highest, %d)", proto, sendgen.MaxProtocol)
	}
	if compressed && proto < 2 {
		return 0, usageErrorf("--compressed-data needs protocol version 2 or later (requested %d)", proto)
	}
	return proto, nil
}

func newSendCommand() *command {
	var opts SendOptions
	flags := pflag.NewFlagSet("send", pflag.ContinueOnError)
	opts.AddFlags(flags)
	return &command{
		Name:    "send",
		Usage:   "send [-f FILE] [-p PARENT] [-c SUBVOL]... [--proto N] [--compressed-data] [--no-data] [-e] [--size] [-q] [--allow-writable] [--degraded] [--scan] DEVICE... SUBVOL...",
		Summary: "write the send stream of a snapshot, full or incremental",
		Help: `Write the btrfs send stream of the read-only subvolume SUBVOL, read straight
from DEVICE (a block device or an image file; give every member of a
multi-device filesystem), to stdout or to FILE. 'btrfs receive DIR' of the
stream rebuilds the snapshot, as with the kernel's 'btrfs send'. With
--parent the stream is incremental: the receiver must already have PARENT.

SUBVOL, PARENT and clone sources are a path from the top level as 'sendfs
list' prints it (snaps/daily.1), a subvolume id, or a uuid. The first
argument is a DEVICE, and so is each following one that is an existing
file or block device, up to the last, which is always a SUBVOL.

The options are those of 'btrfs send' and give the same stream:
  -c SUBVOL          the receiver also has SUBVOL: data shared with it is
                     sent as a clone. Without -p, the parent is chosen among
                     the clone sources as btrfs send does (the snapshot
                     SUBVOL was taken from, else the clone source taken from
                     the same subvolume closest in time to it).
  --proto N          protocol 1 (the default), 2 (bigger writes, holes
                     punched, inode flags, creation times), or 0 for 2.
  --compressed-data  compressed extents are sent as stored and written as
                     such by receive (needs protocol 2, implied).
  --no-data          no file data: UPDATE_EXTENT says where data changed.
  several SUBVOLs    one stream after the other, each full, or from -p, or
                     (with -c and no -p) from a parent chosen among the
                     clone sources and the SUBVOLs already sent; with -e
                     they form one stream, which btrfs receive also reads.

The stream is never written to a terminal. With -f the stream goes to a
temporary file in FILE's directory (mode 0600: it holds every file of the
snapshot) that is renamed to FILE only when complete, so a failed or
interrupted send leaves no FILE and an existing FILE unchanged (a FILE that
is not a regular file, such as /dev/null or a pipe, is written directly).
A send to stdout that fails exits non-zero: discard what was received.

While sending, stderr shows the progress (bytes, rate, time left) when it
is a terminal, unless -q.

` + devicesHelp + `

Examples:
  sendfs list disk.img
  sendfs send -f daily.1.stream disk.img snaps/daily.1
  sendfs send -p snaps/daily.1 disk.img snaps/daily.2 | btrfs receive /backup
  sendfs send --size disk.img 259`,
		Flags: flags,
		Run: func(ctx context.Context, args []string) error {
			opts.ProtoSet = flags.Changed("proto")
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
	devices, specs := splitDevices(args)
	if !opts.Size && opts.File == "" && con.OutIsTerminal {
		return errTerminal
	}
	if err := checkDestination(opts.File, devices); err != nil {
		return err
	}
	if opts.File == "" && con.Out == io.Writer(os.Stdout) {
		if err := checkStdout(); err != nil {
			return err
		}
	}
	fsys, err := openFS(devices, opts.DeviceOptions, cliLogger(con.Err))
	if err != nil {
		return err
	}
	defer fsys.Close()
	streams, err := newSendStreams(fsys, specs, opts)
	if err != nil {
		return err
	}
	if opts.Size {
		n, err := streams.Size(ctx)
		if err != nil {
			return fmt.Errorf("cannot compute the stream size: %w", err)
		}
		if _, err := fmt.Fprintln(con.Out, n); err != nil {
			return fmt.Errorf("cannot write the size to stdout: %w", pathErrorCause(err))
		}
		return nil
	}

	var progress *progressLine
	var report func(int64)
	if con.ErrIsTerminal && !opts.Quiet {
		total, err := streams.Size(ctx)
		if err != nil {
			return fmt.Errorf("cannot compute the stream size: %w", err)
		}
		progress = newProgressLine(con.Err, total, time.Now)
		report = progress.Update
		defer progress.Clear()
	}
	write := func(w io.Writer) (int64, error) { return streams.WriteTo(ctx, w, report) }
	if opts.File != "" {
		err = writeFile(ctx, opts.File, write)
	} else {
		var out *interruptibleWriter
		out, err = writeInterruptibly(ctx, con.Out, write)
		if err != nil {
			err = fmt.Errorf("%w; the %s written to stdout are an incomplete stream", err, humanize.IBytes(uint64(out.written)))
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

// sendError names an interrupted send as such instead of "context canceled".
func sendError(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("send interrupted: %w", err)
	}
	return fmt.Errorf("send failed: %w", err)
}

// splitDevices separates the DEVICEs from the SUBVOLs: the first argument
// is a DEVICE, the last a SUBVOL, and those between are DEVICEs as long as
// they name existing files or block devices.
func splitDevices(args []string) (devices, specs []string) {
	n := 1
	for n < len(args)-1 {
		st, err := os.Stat(args[n])
		if err != nil || !(st.Mode().IsRegular() || st.Mode()&fs.ModeDevice != 0) {
			break
		}
		n++
	}
	return args[:n], args[n:]
}

// newSendStreams resolves the SUBVOLs (specs), --parent and --clone-src and
// checks them, with a message for each way a user can get it wrong; it
// picks each SUBVOL's parent and clone sources as btrfs send does.
func newSendStreams(fsys *btrfsread.FS, specs []string, opts SendOptions) (*streamSet, error) {
	proto, err := opts.protocol()
	if err != nil {
		return nil, err
	}
	var parent *btrfsread.Subvolume
	if opts.Parent != "" {
		if parent, err = findSendable(fsys, opts.Parent, sendgen.RoleParent, opts.AllowWritable); err != nil {
			return nil, err
		}
	}
	var clones []*btrfsread.Subvolume
	for _, spec := range opts.CloneSources {
		sv, err := findSendable(fsys, spec, sendgen.RoleClone, opts.AllowWritable)
		if err != nil {
			return nil, err
		}
		clones = append(clones, sv)
	}
	var all []*btrfsread.Subvolume
	if parent == nil && len(clones) > 0 {
		if all, err = fsys.Subvolumes(); err != nil {
			return nil, fmt.Errorf("cannot list the subvolumes: %w", err)
		}
	}
	set := &streamSet{oneStream: opts.OneStream}
	for _, spec := range specs {
		child, err := findSendable(fsys, spec, sendgen.RoleChild, opts.AllowWritable)
		if err != nil {
			return nil, err
		}
		p := parent
		if parent == nil && len(clones) > 0 {
			if p, err = goodParent(all, child, clones); err != nil {
				return nil, err
			}
		}
		sgOpts := sendgen.Options{
			Protocol:       proto,
			CompressedData: opts.CompressedData,
			NoData:         opts.NoData,
			CloneSources:   slices.Clone(clones),
			AllowWritable:  opts.AllowWritable,
		}
		stream, err := sendgen.NewStream(child, p, sgOpts)
		if err != nil {
			return nil, fmt.Errorf("cannot send %s: %w", child, refusal(err))
		}
		set.streams = append(set.streams, stream)
		if parent == nil && len(clones) > 0 {
			// As btrfs send: a SUBVOL sent is a clone source for the next.
			clones = append(clones, child)
		}
	}
	return set, nil
}

// findSendable resolves spec and checks it as sendgen does for its role,
// as soon as it is resolved: each refusal comes before the choice of a
// parent among the clone sources could fail on the same subvolume.
func findSendable(fsys *btrfsread.FS, spec string, role sendgen.Role, allowWritable bool) (*btrfsread.Subvolume, error) {
	sv, err := findSubvol(fsys, spec, string(role))
	if err != nil {
		return nil, err
	}
	if err := sendgen.CheckSubvolume(sv, role, allowWritable); err != nil {
		return nil, refusal(err)
	}
	return sv, nil
}

// refusal words sendgen's refusal of a subvolume for the command line:
// what to do instead, with the flag that allows a writable subvolume.
// Other errors are returned as they are.
func refusal(err error) error {
	var re *sendgen.RefusedError
	switch {
	case !errors.As(err, &re):
		return err
	case re.TopLevel && re.Role == sendgen.RoleChild:
		return fmt.Errorf("the top level (id 5) %s, as with the kernel's send; send one of its subvolumes ('sendfs list' shows them)", re.TopLevelCannot())
	case re.TopLevel:
		return fmt.Errorf("the top level (id 5) %s, as with the kernel's send; give a read-only snapshot", re.TopLevelCannot())
	}
	return fmt.Errorf("%s %s is not read-only; snapshot it with `btrfs subvolume snapshot -r`, or pass --allow-writable if the image is not mounted anywhere", re.Role, re.Subvol)
}

// goodParent picks child's parent among the clone sources as btrfs-progs'
// find_good_parent does: the subvolume child was snapshotted from, if it is
// a clone source; else the clone source snapshotted from that same
// subvolume whose ctransid is closest to the subvolume's (the first of
// equals).
func goodParent(all []*btrfsread.Subvolume, child *btrfsread.Subvolume, clones []*btrfsread.Subvolume) (*btrfsread.Subvolume, error) {
	byUUID := func(u btrfsread.UUID) *btrfsread.Subvolume {
		if u.IsZero() {
			return nil
		}
		for _, sv := range all {
			if sv.Root.UUID == u {
				return sv
			}
		}
		return nil
	}
	origin := byUUID(child.Root.ParentUUID)
	if origin == nil {
		return nil, fmt.Errorf("cannot choose a parent for %s among the clone sources: it is not a snapshot of a subvolume on this filesystem; give one with -p", child)
	}
	var best *btrfsread.Subvolume
	bestDiff := uint64(math.MaxUint64)
	for _, c := range clones {
		if c.ID == origin.ID {
			return c, nil
		}
	}
	for _, c := range clones {
		if o := byUUID(c.Root.ParentUUID); o == nil || o.ID != origin.ID {
			continue
		}
		diff := c.Root.CTransid - origin.Root.CTransid
		if c.Root.CTransid < origin.Root.CTransid {
			diff = origin.Root.CTransid - c.Root.CTransid
		}
		if diff < bestDiff {
			best, bestDiff = c, diff
		}
	}
	if best == nil {
		return nil, fmt.Errorf("cannot choose a parent for %s among the clone sources: none is %s or another snapshot of it; give one with -p", child, origin)
	}
	return best, nil
}

// findSubvol resolves spec (path, id or uuid); role names it in errors. A
// path quoted as 'sendfs list' prints names that are not UTF-8 or hold
// control characters ("bad\xff") is taken unquoted.
func findSubvol(fsys *btrfsread.FS, spec, role string) (*btrfsread.Subvolume, error) {
	var sv *btrfsread.Subvolume
	err := fsys.Latest().Retry(func(v *btrfsread.FS) error { // a live filesystem may commit meanwhile
		var err error
		sv, err = v.FindSubvolume(spec)
		if u, uerr := strconv.Unquote(spec); errors.Is(err, btrfsread.ErrNotFound) && uerr == nil && spec[0] == '"' {
			sv, err = v.FindSubvolume(u)
		}
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
