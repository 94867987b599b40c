package btrfsread

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync/atomic"

	"github.com/google/uuid"
)

// FS is an open btrfs filesystem (one or more member devices), read-only.
// All methods are safe for concurrent use.
type FS struct {
	sb      *superblock // the superblock copy in use
	csum    csumAlgo
	members []*member // sorted by devid
	chunks  chunkMap  // built in New, read-only afterwards
	blocks  *blockCache
	closers []io.Closer

	// diskBlockReads counts tree blocks read from the devices (cache misses);
	// tests use it to see which subtrees were skipped.
	diskBlockReads atomic.Int64
	live           *liveState // shared by every view (live.go)
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
func Open(paths ...string) (*FS, error) {
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
		f, err := os.OpenFile(p, os.O_RDONLY, 0)
		if err != nil {
			closeAll()
			return nil, err
		}
		files = append(files, f)
		// Seek, not Stat: a block device's stat size is 0.
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%s: size: %w", p, err)
		}
		r, err := coherentReader(f)
		if err != nil {
			closeAll()
			return nil, err
		}
		if bd, ok := r.(*blockDevice); ok {
			files = append(files, bd)
		}
		devs = append(devs, Device{Name: p, R: r, Size: size})
	}
	fs, err := New(devs)
	if err != nil {
		closeAll()
		return nil, err
	}
	fs.closers = files
	return fs, nil
}

// New assembles a filesystem from already opened devices. Close on the
// result does not close them.
func New(devs []Device) (*FS, error) {
	if len(devs) == 0 {
		return nil, errors.New("no device given")
	}
	members := make([]*member, len(devs))
	for i, d := range devs {
		if d.Size < 0 {
			return nil, fmt.Errorf("%s: negative size %d", d.Name, d.Size)
		}
		sb, err := readSuperblock(d)
		if err != nil {
			return nil, err
		}
		members[i] = &member{Device: d, sb: sb}
	}
	sort.SliceStable(members, func(i, j int) bool { return members[i].sb.dev.devid < members[j].sb.dev.devid })
	fs := &FS{members: members, sb: members[0].sb, live: &liveState{}}
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
	fs.blocks = newBlockCache(defaultCacheBytes)
	if err := fs.loadChunksLive(); err != nil {
		return nil, err
	}
	if uint64(len(members)) < fs.sb.numDevices {
		return nil, sentinelf(ErrMissingDevice, "filesystem %s has %d devices but only %d were given; pass all member devices",
			uuidString(fs.sb.fsid), fs.sb.numDevices, len(members))
	}
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
		if fs.member(id) == nil {
			return fs.missing(id)
		}
	}
	full, err := fs.resolveStripes(all)
	if err != nil {
		return err
	}
	fs.chunks = full
	return nil
}

// resolveStripes attaches each stripe to its member device and sorts the map.
func (fs *FS) resolveStripes(chunks []chunk) (chunkMap, error) {
	for i := range chunks {
		for j := range chunks[i].stripes {
			s := &chunks[i].stripes[j]
			m := fs.member(s.devid)
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
	return sentinelf(ErrMissingDevice, "filesystem %s: member device devid %d was not given (%d of %d devices given); pass all member devices",
		uuidString(fs.sb.fsid), devid, len(fs.members), fs.sb.numDevices)
}

func uuidString(u UUID) string { return uuid.UUID(u).String() }
