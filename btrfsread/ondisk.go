package btrfsread

// Raw on-disk layouts, field for field as the kernel's ctree.h declares
// them (docs/FORMAT.md §2.1, §2.6): read and written with encoding/binary
// (little-endian, packed), so offsets follow from the declarations instead
// of being written by hand. The decoded types (superblock, devItem, chunk)
// keep only what the reader uses.

// rawSuperblock is struct btrfs_super_block (4096 bytes).
type rawSuperblock struct {
	Csum                [32]byte
	FSID                UUID
	Bytenr              uint64
	Flags               uint64
	Magic               [8]byte
	Generation          uint64
	Root                uint64
	ChunkRoot           uint64
	LogRoot             uint64
	LogRootTransid      uint64
	TotalBytes          uint64
	BytesUsed           uint64
	RootDirObjectID     uint64
	NumDevices          uint64
	SectorSize          uint32
	NodeSize            uint32
	LeafSize            uint32
	StripeSize          uint32
	SysChunkArraySize   uint32
	ChunkRootGeneration uint64
	CompatFlags         uint64
	CompatROFlags       uint64
	IncompatFlags       uint64
	CsumType            uint16
	RootLevel           uint8
	ChunkRootLevel      uint8
	LogRootLevel        uint8
	DevItem             rawDevItem
	Label               [256]byte
	CacheGeneration     uint64
	UUIDTreeGeneration  uint64
	MetadataUUID        UUID
	Reserved            [224]byte // nr_global_roots, remap tree and reserved words
	SysChunkArray       [sysChunkArrayMax]byte
	SuperRoots          [4 * 168]byte
	Padding             [565]byte
}

// rawDevItem is struct btrfs_dev_item (98 bytes).
type rawDevItem struct {
	DevID       uint64
	TotalBytes  uint64
	BytesUsed   uint64
	IOAlign     uint32
	IOWidth     uint32
	SectorSize  uint32
	Type        uint64
	Generation  uint64
	StartOffset uint64
	DevGroup    uint32
	SeekSpeed   uint8
	Bandwidth   uint8
	UUID        UUID
	FSID        UUID
}

// rawChunk is struct btrfs_chunk without its stripes (48 bytes).
type rawChunk struct {
	Length     uint64
	Owner      uint64
	StripeLen  uint64
	Type       uint64
	IOAlign    uint32
	IOWidth    uint32
	SectorSize uint32
	NumStripes uint16
	SubStripes uint16
}

// rawStripe is struct btrfs_stripe (32 bytes).
type rawStripe struct {
	DevID   uint64
	Offset  uint64
	DevUUID UUID
}
