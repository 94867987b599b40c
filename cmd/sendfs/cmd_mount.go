package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/spf13/pflag"

	"sendfs/fusefs"
	"sendfs/sendgen"
)

// MountOptions are the flags of sendfs mount.
type MountOptions struct {
	DeviceOptions
	CacheDir       string
	AllowOther     bool
	Debug          bool
	AllSubvolumes  bool
	Proto          int
	ProtoSet       bool // --proto was given
	CompressedData bool
	Refresh        time.Duration
}

// AddFlags defines the mount flags on f.
func (o *MountOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.CacheDir, "cache-dir", defaultCacheDir(), "keep computed stream sizes and plans in `DIR` across mounts ('' keeps sizes in memory only, and no plans)")
	f.BoolVar(&o.AllowOther, "allow-other", false, "let other users read the mount (with default_permissions; see Security above)")
	f.BoolVar(&o.Debug, "debug", false, "log every FUSE request and debug messages on stderr")
	f.BoolVar(&o.AllSubvolumes, "all-subvolumes", false, "serve writable subvolumes too (only safe if the filesystem is not mounted anywhere)")
	f.DurationVar(&o.Refresh, "refresh", 2*time.Second, "look for new, renamed and deleted snapshots this often (`DURATION`, e.g. 2s, 1m; 0 = never)")
	f.IntVar(&o.Proto, "proto", 1, "serve streams of protocol version `N`: 1, 2, or 0 for the highest sendfs supports (2)")
	f.BoolVar(&o.CompressedData, "compressed-data", false, "serve streams with compressed extents as stored, as 'sendfs send --compressed-data' (implies --proto 2)")
	o.DeviceOptions.AddFlags(f)
}

// defaultCacheDir is $XDG_CACHE_HOME/sendfs, else ~/.cache/sendfs ("" when
// neither is known: sizes then live in memory only).
func defaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "sendfs")
}

func newMountCommand() *command {
	var opts MountOptions
	flags := pflag.NewFlagSet("mount", pflag.ContinueOnError)
	opts.AddFlags(flags)
	return &command{
		Name:    "mount",
		Usage:   "mount [flags] DEVICE... MOUNTPOINT",
		Summary: "mount a read-only tree where every snapshot's send streams are files",
		Help: `Mount at MOUNTPOINT (an empty directory) a read-only tree of the btrfs send
streams of DEVICE (a block device or an image file; give every member of a
multi-device filesystem). Streams are generated when read, byte for byte
what 'sendfs send' writes:

  snapshots/NAME/full.stream           full stream of the snapshot NAME
  snapshots/NAME/from/PARENT.stream    incremental stream from PARENT
  snapshots/NAME/from/PARENT.diff      what 'sendfs diff' prints (not listed)
  by-id/ID -> ../snapshots/NAME        the same, by subvolume id
  by-uuid/UUID -> ../snapshots/NAME    the same, by subvolume uuid

NAME is the subvolume's path from the top level read backwards, joined by
' ‹ ' (snaps/daily.1 is 'daily.1 ‹ snaps'), escaped when a component holds
'%' or '‹' ('%' as %25, '/' as %2F, '‹' as %E2%80%B9), at most 248 bytes
(longer names end with '…~' and a hash); 'sendfs list --json' prints it as
mount_name, and the escaped names of earlier versions (snaps%2Fdaily.1)
still work. from/ lists the snapshots of the same lineage (snapshots of
one subvolume, or of each other); any other read-only subvolume works as
PARENT by name although it is not listed. Only read-only subvolumes are
served, unless --all-subvolumes.

Every stream file reports its exact length, computed from metadata
without reading file data, so cp, rsync, tar and mmap readers copy it
whole. Lengths are computed in the background after mounting and kept in
--cache-dir for the next mount. The list of snapshots is read once, at
mount time.

Every stream is served in one form, that of 'sendfs send' with the same
--proto and --compressed-data (protocol 1 by default). Sizes are cached
per form. Clone sources (send -c) are for the CLI only.

The mount runs in the foreground and logs to stderr. Ctrl-C, SIGTERM or
'fusermount3 -u MOUNTPOINT' unmount it; if stream files are still open it
is unmounted lazily and sendfs exits when the last one is closed.

Security: a stream holds every byte of its snapshot, whatever the
permissions of the files inside it. Only the mounting user can read the
mount (files 0400, directories 0500, owned by that user). --allow-other
lets other users reach it but always with default_permissions, so the
kernel still enforces those modes: in practice it adds root, for example a
backup job run by root reading a mount made by a user. Never mount such a
tree with allow_other and without default_permissions: every user could
read every file of every snapshot.

` + devicesHelp + `

Examples:
  mkdir /tmp/streams && sendfs mount disk.img /tmp/streams
  rsync -a '/tmp/streams/snapshots/daily.2 ‹ snaps/from/daily.1 ‹ snaps.stream' backup:/streams/
  btrfs receive -f '/tmp/streams/snapshots/daily.1 ‹ snaps/full.stream' /backup
  mount -t fuse.sendfs disk.img /tmp/streams -o allow_other,cache_dir=/var/cache/sendfs

As a mount(8) helper ('mount -t fuse.sendfs', /etc/fstab), sendfs mounts in
the background and returns once the tree answers; every flag is an -o
option with '_' for '-'. With $NOTIFY_SOCKET set (systemd Type=notify) it
sends READY=1 once the tree answers and STOPPING=1 when it unmounts.`,
		Flags: flags,
		Run: func(ctx context.Context, args []string) error {
			opts.ProtoSet = flags.Changed("proto")
			return runMount(ctx, opts, stdConsole(), args)
		},
	}
}

// mountMemoryLimit is the mount's soft memory limit (runtime/debug), unless
// GOMEMLIMIT sets another. What the mount keeps is bounded (caches, queues
// and read-ahead shared by all readers, under 200 MiB with 8 readers at
// once); the limit keeps the garbage collector from letting the heap grow
// to twice that between collections.
const mountMemoryLimit = 224 << 20

// limitMemory sets mountMemoryLimit unless GOMEMLIMIT is set.
func limitMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(mountMemoryLimit)
	}
}

// runMount serves the devices args[:n-1] at args[n-1] until unmounted:
// from outside, or when ctx is cancelled (SIGINT, SIGTERM).
func runMount(ctx context.Context, opts MountOptions, con *console, args []string) error {
	if len(args) < 2 {
		return usageErrorf("need DEVICE... and MOUNTPOINT")
	}
	if opts.Refresh < 0 {
		return usageErrorf("--refresh %s: give a duration of 0 (never) or more", opts.Refresh)
	}
	devices, mountpoint := args[:len(args)-1], args[len(args)-1]
	for _, d := range devices {
		if st, err := os.Stat(d); err == nil && st.IsDir() && !opts.Scan { // --scan searches directories
			return usageErrorf("DEVICE %s is a directory; MOUNTPOINT must be the last argument", d)
		}
	}
	proto, err := resolveProtocol(opts.Proto, opts.ProtoSet, opts.CompressedData)
	if err != nil {
		return err
	}
	mountpoint, err = filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	if err := fusefs.CheckMountpoint(mountpoint); err != nil {
		return err
	}
	level := slog.LevelInfo
	if opts.Debug {
		level = slog.LevelDebug
	}
	logTo := con.Err
	detached := detachedLog()
	if detached != nil {
		logTo = detached
	}
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: level}))
	limitMemory()
	fsys, err := openFS(devices, opts.DeviceOptions, log)
	if err != nil {
		return err
	}
	defer fsys.Close()
	root, err := fusefs.New(fusefs.Config{
		FS:            fsys,
		AllSubvolumes: opts.AllSubvolumes,
		CacheDir:      opts.CacheDir,
		Logger:        log,
		Stream:        sendgen.Options{Protocol: proto, CompressedData: opts.CompressedData},
		Refresh:       opts.Refresh,
	})
	if err != nil {
		return err
	}
	defer root.Close()
	fsName, _ := filepath.Abs(devices[0])
	server, err := fusefs.Mount(mountpoint, root, fusefs.MountOptions{
		FsName:     fsName,
		AllowOther: opts.AllowOther,
		Debug:      opts.Debug,
	})
	if err != nil {
		return fmt.Errorf("cannot mount on %s: %w", mountpoint, err)
	}
	if err := ready(mountpoint, root.Snapshots(), detached, log); err != nil {
		fusefs.Unmount(server, mountpoint)
		return err
	}
	go root.Warm(max(1, runtime.NumCPU()/2))
	go root.Follow()

	unmounted := make(chan struct{})
	go func() {
		server.Wait()
		close(unmounted)
	}()
	select {
	case <-unmounted:
		stopping(log)
	case <-ctx.Done():
		stopping(log)
		lazy, err := fusefs.Unmount(server, mountpoint)
		if err != nil {
			return fmt.Errorf("cannot unmount %s: %w", mountpoint, err)
		}
		if lazy {
			log.Info("stream files still open: unmounted lazily, exiting when the last one is closed")
		}
		<-unmounted
	}
	log.Info("unmounted", "mountpoint", mountpoint)
	return nil
}
