package btrfsread

// Cooked, validated item types. Parse functions for them live beside them
// (ParseInodeItem, ParseInodeRefs, ParseDirItems, ParseFileExtent,
// ParseRootItem); each returns a *CorruptError for malformed input and never
// panics.

// UUID is a btrfs uuid, 16 raw bytes.
type UUID [16]byte

// IsZero reports whether u is all zeros (an unset uuid).
func (u UUID) IsZero() bool { return u == UUID{} }

// Timespec is an on-disk timestamp (u64 seconds, u32 nanoseconds).
type Timespec struct {
	Sec  uint64
	Nsec uint32
}

// InodeItem is a decoded btrfs_inode_item (160 bytes on disk).
type InodeItem struct {
	Generation uint64
	Transid    uint64
	Size       uint64
	Nbytes     uint64
	Nlink      uint32
	UID        uint32
	GID        uint32
	Mode       uint32 // full st_mode, type bits included
	Rdev       uint64 // kernel-internal dev_t: major<<20 | minor
	Flags      uint64 // low 32 bits BTRFS_INODE_*, high 32 ro_flags
	Atime      Timespec
	Ctime      Timespec
	Mtime      Timespec
	Otime      Timespec
}

// InodeRef is one name of an inode: from an INODE_REF item (Parent is the
// key offset) or an INODE_EXTREF item. Name is validated (1-255 bytes, no '/',
// no NUL, not "." or "..").
type InodeRef struct {
	Parent uint64
	Index  uint64
	Name   []byte
}

// File types stored in dir items.
const (
	FtUnknown = 0
	FtRegFile = 1
	FtDir     = 2
	FtChrdev  = 3
	FtBlkdev  = 4
	FtFifo    = 5
	FtSock    = 6
	FtSymlink = 7
	FtXattr   = 8
)

// DirItem is one entry of a DIR_ITEM, DIR_INDEX or XATTR_ITEM. For xattrs Name
// is the attribute name and Data its value. Location.Type is RootItemKey when
// the entry is a nested subvolume.
type DirItem struct {
	Location Key
	Transid  uint64
	Type     uint8
	Name     []byte
	Data     []byte
}

// File extent types and compression types.
const (
	ExtentInline   = 0
	ExtentReg      = 1
	ExtentPrealloc = 2

	CompressNone = 0
	CompressZlib = 1
	CompressLZO  = 2
	CompressZstd = 3
)

// FileExtent is a decoded EXTENT_DATA item. For inline extents Inline holds
// the item payload (compressed when Compression != CompressNone) and the
// Disk*/Offset/NumBytes fields are zero; RamBytes is the decompressed length.
// A regular extent with DiskBytenr 0 is an explicit hole.
type FileExtent struct {
	Generation   uint64
	RamBytes     uint64
	Compression  uint8
	Type         uint8
	Inline       []byte
	DiskBytenr   uint64
	DiskNumBytes uint64
	Offset       uint64
	NumBytes     uint64
}

// Len is the number of file bytes the extent covers starting at its key
// offset: NumBytes, or RamBytes for an inline extent.
func (e *FileExtent) Len() uint64 {
	if e.Type == ExtentInline {
		return e.RamBytes
	}
	return e.NumBytes
}

// IsHole reports whether the extent reads as zeros without data on disk:
// an explicit hole or a prealloc extent.
func (e *FileExtent) IsHole() bool {
	return e.Type == ExtentPrealloc || (e.Type == ExtentReg && e.DiskBytenr == 0)
}

// Root item flags.
const RootSubvolReadOnly = 1

// RootItem is a decoded ROOT_ITEM. The v2 fields (uuids, transids, times) are
// zero when the item predates them (size < 439 or generation_v2 mismatch).
type RootItem struct {
	Inode        InodeItem
	Generation   uint64
	RootDirID    uint64
	Bytenr       uint64
	Level        uint8
	Flags        uint64
	Refs         uint32
	UUID         UUID
	ParentUUID   UUID
	ReceivedUUID UUID
	CTransid     uint64
	OTransid     uint64
	STransid     uint64
	RTransid     uint64
	CTime        Timespec
	OTime        Timespec
	STime        Timespec
	RTime        Timespec
}

// RootRef is a decoded ROOT_REF or ROOT_BACKREF: the directory and name under
// which a subvolume is linked into its parent tree.
type RootRef struct {
	DirID    uint64
	Sequence uint64
	Name     []byte
}
