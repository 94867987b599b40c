package btrfsread

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"sendfs/internal/lru"

	"github.com/google/uuid"
)

// FS is an open btrfs filesystem (one or more member devices), read-only.
// All methods are safe for concurrent use.
type FS struct {
	sb      *superblock // the superblock copy in use
	csum    csumAlgo
	members []*member                     // sorted by devid
	chunks  chunkMap                      // built in New, read-only afterwards
	blocks  *lru.Cache[uint64, *node]     // validated tree blocks, shared by every view
	extents *lru.Cache[extentKey, []byte] // decompressed extents of this view
	closers []io.Closer
	opts    OpenOptions
	// missingDevids are the member devices that were not given (sorted);
	// their stripes have no device (stripe.dev is nil). Only with
	// OpenOptions.Degraded.
	missingDevids []uint64
	readErrs      *readErrorLog // shared by every view
	// trees remembers Tree(id) (id → Tree): the root tree of sb never
	// changes, and the csum and extent trees are looked up for every
	// data read and extent sent.
	trees sync.Map

	// diskBlockReads counts tree blocks read from the devices (cache misses);
	// tests use it to see which subtrees were skipped.
	diskBlockReads atomic.Int64
	// warnings are problems that did not stop Open (see Warnings).
	warnings []string
	live     *liveState // shared by every view (live.go)

	// backrefs answers the clone search for this view (backrefcache.go).
	backrefs backrefCache
}

// Warnings lists what Open survived but a user should know: a primary
// superblock that is corrupt and was replaced by a backup copy, members
// missing (Degraded) and the chunks they make unreadable.
func (fs *FS) Warnings() []string { return fs.warnings }

// primarySuperblockWarning says so when the copy readSuperblock chose for
// dev is a backup because the primary copy is bad.
func primarySuperblockWarning(dev Device, used *superblock) string {
	primary := superOffsets[0]
	if used.bytenr == uint64(primary) {
		return ""
	}
	buf := make([]byte, superSize)
	why := "unreadable"
	if _, err := dev.R.ReadAt(buf, primary); err == nil {
		_, perr := parseSuperblock(buf, uint64(primary))
		if perr == nil {
			return "" // valid but older: a commit was interrupted
		}
		why = perr.Error()
	}
	return fmt.Sprintf("%s: the primary superblock at 64 KiB is bad (%s); using the backup copy at physical 0x%x", dev.Name, why, used.bytenr)
}

// Device is one member device: anything with ReadAt and a size.
type Device struct {
	Name string // for messages
	R    io.ReaderAt
	Size int64
}

// member is a device with its own superblock copy.
type member struct {
	Device
	sb *superblock
}

// Info describes the filesystem, from the superblock in use.
type Info struct {
	FSID         UUID
	MetadataUUID UUID
	Label        string
	Generation   uint64
	SectorSize   uint32
	NodeSize     uint32
	CsumType     uint16
	NumDevices   uint64
	Incompat     uint64
	CompatRO     uint64
	TotalBytes   uint64
	BytesUsed    uint64
}

// sentinelError is a complete message that still matches a sentinel with
// errors.Is (fmt's %w would repeat the sentinel's text).
type sentinelError struct {
	msg      string
	sentinel error
}

func (e *sentinelError) Error() string { return e.msg }
func (e *sentinelError) Unwrap() error { return e.sentinel }

func sentinelf(sentinel error, format string, args ...any) error {
	return &sentinelError{fmt.Sprintf(format, args...), sentinel}
}

// truncatedf reports an image file shorter than the filesystem on it; it
// matches io.ErrUnexpectedEOF.
func truncatedf(dev, format string, args ...any) error {
	return sentinelf(io.ErrUnexpectedEOF, "%s: image is truncated: %s", dev, fmt.Sprintf(format, args...))
}

// Open opens the device or image files at paths read-only and assembles the
// filesystem they belong to. Every member must be given.
func Open(paths ...string) (*FS, error) { return OpenOptions{}.Open(paths...) }

// Open opens the device or image files at paths read-only and assembles the
// filesystem they belong to, as o allows.
func (o OpenOptions) Open(paths ...string) (*FS, error) {
	if len(paths) == 0 {
		return nil, errors.New("no device given")
	}
	var devs []Device
	var files []io.Closer
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	for _, p := range paths {
		f, dev, err := openDevice(p)
		if err != nil {
			closeAll()
			return nil, err
		}
		files = append(files, f)
		devs = append(devs, dev)
	}
	fs, err := o.New(devs)
	if err != nil {
		closeAll()
		return nil, err
	}
	fs.closers = files
	return fs, nil
}

// openDevice opens the device or image file at p read-only.
func openDevice(p string) (io.Closer, Device, error) {
	if err := checkDeviceType(p); err != nil {
		return nil, Device{}, err
	}
	f, err := os.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, Device{}, err
	}
	// Seek, not Stat: a block device's stat size is 0.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, Device{}, fmt.Errorf("%s: size: %w", p, err)
	}
	r, err := coherentReader(f, size)
	if err != nil {
		f.Close()
		return nil, Device{}, err
	}
	if bd, ok := r.(*blockDevice); ok {
		return bd, Device{Name: p, R: bd, Size: size}, nil
	}
	return f, Device{Name: p, R: f, Size: size}, nil
}

// checkDeviceType refuses, before opening it, a path that is neither a
// regular file nor a block device: opening a fifo for reading blocks until a
// writer comes, and a directory or character device holds no filesystem.
// A path that cannot be stat'ed is left to open to report.
func checkDeviceType(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return nil
	}
	m := st.Mode()
	kind := ""
	switch {
	case m.IsRegular(), m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		return nil
	case m.IsDir():
		kind = "a directory"
	case m&os.ModeNamedPipe != 0:
		kind = "a fifo"
	case m&os.ModeCharDevice != 0:
		kind = "a character device"
	case m&os.ModeSocket != 0:
		kind = "a socket"
	default:
		kind = "not a regular file"
	}
	return fmt.Errorf("%s is %s, not a block device or image file", path, kind)
}

// New assembles a filesystem from already opened devices. Close on the
// result does not close them. Every member must be given.
func New(devs []Device) (*FS, error) { return OpenOptions{}.New(devs) }

// New assembles a filesystem from already opened devices, as o allows.
// Close on the result does not close them.
func (o OpenOptions) New(devs []Device) (*FS, error) {
	if len(devs) == 0 {
		return nil, errors.New("no device given")
	}
	members := make([]*member, len(devs))
	var warnings []string
	for i, d := range devs {
		if d.Size < 0 {
			return nil, fmt.Errorf("%s: negative size %d", d.Name, d.Size)
		}
		sb, err := readSuperblock(d)
		if err != nil {
			return nil, err
		}
		if w := primarySuperblockWarning(d, sb); w != "" {
			warnings = append(warnings, w)
		}
		members[i] = &member{Device: d, sb: sb}
	}
	sort.SliceStable(members, func(i, j int) bool { return members[i].sb.dev.devid < members[j].sb.dev.devid })
	fs := &FS{members: members, sb: members[0].sb, opts: o, warnings: warnings, live: &liveState{}, readErrs: &readErrorLog{}}
	for i, m := range members {
		if m.sb.fsid != members[0].sb.fsid {
			return nil, fmt.Errorf("%s and %s belong to different filesystems (fsid %s, %s)",
				members[0].Name, m.Name, uuidString(members[0].sb.fsid), uuidString(m.sb.fsid))
		}
		if i > 0 && m.sb.dev.devid == members[i-1].sb.dev.devid {
			return nil, fmt.Errorf("%s and %s are the same member device (devid %d)", members[i-1].Name, m.Name, m.sb.dev.devid)
		}
		if m.sb.generation > fs.sb.generation {
			fs.sb = m.sb
		}
		if m.sb.dev.totalBytes > uint64(m.Size) {
			return nil, truncatedf(m.Name, "%d bytes, but the filesystem uses %d bytes of this device", m.Size, m.sb.dev.totalBytes)
		}
	}
	if err := fs.sb.checkFeatures(); err != nil {
		return nil, err
	}
	fs.csum = fs.sb.csum
	fs.blocks, fs.extents = newNodeCache(nodeCacheBytes), newExtentCache()
	if err := fs.loadChunksLive(); err != nil {
		return nil, err
	}
	if uint64(len(members)) < fs.sb.numDevices && !o.Degraded {
		return nil, sentinelf(ErrMissingDevice, "filesystem %s has %d devices but only %d were given",
			uuidString(fs.sb.fsid), fs.sb.numDevices, len(members))
	}
	fs.warnings = append(fs.warnings, fs.degradedWarnings()...)
	fs.live.latest.Store(fs)
	return fs, nil
}

// Close releases the devices Open opened.
func (fs *FS) Close() error {
	var errs []error
	for _, c := range fs.closers {
		errs = append(errs, c.Close())
	}
	fs.closers = nil
	return errors.Join(errs...)
}

// Info returns the superblock facts.
func (fs *FS) Info() Info {
	sb := fs.sb
	return Info{
		FSID:         sb.fsid,
		MetadataUUID: sb.metadataUUID,
		Label:        sb.label,
		Generation:   sb.generation,
		SectorSize:   sb.sectorSize,
		NodeSize:     sb.nodeSize,
		CsumType:     sb.csumType,
		NumDevices:   sb.numDevices,
		Incompat:     sb.incompat,
		CompatRO:     sb.compatRO,
		TotalBytes:   sb.totalBytes,
		BytesUsed:    sb.bytesUsed,
	}
}

// member returns the device with devid, or nil.
func (fs *FS) member(devid uint64) *member {
	i := sort.Search(len(fs.members), func(i int) bool { return fs.members[i].sb.dev.devid >= devid })
	if i < len(fs.members) && fs.members[i].sb.dev.devid == devid {
		return fs.members[i]
	}
	return nil
}

// loadChunks builds the chunk map: the bootstrap SYSTEM chunks from the
// superblock first, then every chunk of the chunk tree.
func (fs *FS) loadChunks() error {
	boot, err := parseSysChunkArray(fs.sb.sysChunkArray)
	if err != nil {
		return err
	}
	if fs.chunks, err = fs.resolveStripes(boot); err != nil {
		return err
	}
	var all []chunk
	var devids []uint64
	err = fs.chunkTree().Walk(Key{}, MaxKey, func(it Item) error {
		switch it.Key.Type {
		case DevItemKey:
			devids = append(devids, it.Key.Offset)
		case ChunkItemKey:
			c, _, err := parseChunk(it.Key.Offset, it.Data)
			if err != nil {
				return err
			}
			all = append(all, c)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading chunk tree: %w", err)
	}
	for _, id := range devids {
		if fs.member(id) == nil && !slices.Contains(fs.missingDevids, id) {
			if !fs.opts.Degraded {
				return fs.missing(id)
			}
			fs.missingDevids = append(fs.missingDevids, id)
		}
	}
	full, err := fs.resolveStripes(all)
	if err != nil {
		return err
	}
	fs.chunks = full
	slices.Sort(fs.missingDevids)
	return nil
}

// resolveStripes attaches each stripe to its member device and sorts the map.
// A stripe of a member that was not given has no device when the
// filesystem is opened degraded.
func (fs *FS) resolveStripes(chunks []chunk) (chunkMap, error) {
	for i := range chunks {
		for j := range chunks[i].stripes {
			s := &chunks[i].stripes[j]
			m := fs.member(s.devid)
			if m == nil && fs.opts.Degraded {
				if !slices.Contains(fs.missingDevids, s.devid) {
					fs.missingDevids = append(fs.missingDevids, s.devid)
				}
				continue
			}
			if m == nil {
				return nil, fs.missing(s.devid)
			}
			if m.sb.dev.uuid != s.devUUID {
				return nil, fmt.Errorf("%s has devid %d but device uuid %s, the filesystem expects %s",
					m.Name, s.devid, uuidString(m.sb.dev.uuid), uuidString(s.devUUID))
			}
			s.dev = m
		}
	}
	return newChunkMap(chunks)
}

func (fs *FS) chunkTree() Tree {
	return fs.treeAt(ChunkTreeID, fs.sb.chunkRoot, fs.sb.chunkRootLevel, fs.sb.chunkRootGeneration)
}

func (fs *FS) missing(devid uint64) error {
	return sentinelf(ErrMissingDevice, "filesystem %s: member device devid %d was not given (%d of %d devices given)",
		uuidString(fs.sb.fsid), devid, len(fs.members), fs.sb.numDevices)
}

func uuidString(u UUID) string { return uuid.UUID(u).String() }
