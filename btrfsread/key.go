package btrfsread

import "fmt"

// Key is a btrfs disk key. Keys order by ObjectID, then Type, then Offset,
// all unsigned.
type Key struct {
	ObjectID uint64
	Type     uint8
	Offset   uint64
}

// Compare returns -1, 0 or +1 as k sorts before, equal to or after o.
func (k Key) Compare(o Key) int {
	switch {
	case k.ObjectID < o.ObjectID:
		return -1
	case k.ObjectID > o.ObjectID:
		return 1
	case k.Type < o.Type:
		return -1
	case k.Type > o.Type:
		return 1
	case k.Offset < o.Offset:
		return -1
	case k.Offset > o.Offset:
		return 1
	}
	return 0
}

func (k Key) String() string { return fmt.Sprintf("(%d %d %d)", k.ObjectID, k.Type, k.Offset) }

// MaxKey sorts after every key.
var MaxKey = Key{ObjectID: ^uint64(0), Type: 0xff, Offset: ^uint64(0)}

// Item types.
const (
	InodeItemKey      = 1
	InodeRefKey       = 12
	InodeExtrefKey    = 13
	XattrItemKey      = 24
	VerityDescItemKey = 36
	OrphanItemKey     = 48
	DirItemKey        = 84
	DirIndexKey       = 96
	ExtentDataKey     = 108
	ExtentCsumKey     = 128
	RootItemKey       = 132
	RootBackrefKey    = 144
	RootRefKey        = 156
	ExtentItemKey     = 168
	MetadataItemKey   = 169
	TreeBlockRefKey   = 176
	ExtentDataRefKey  = 178
	SharedBlockRefKey = 182
	SharedDataRefKey  = 184
	DevItemKey        = 216
	ChunkItemKey      = 228
	UUIDKeySubvol     = 251
	UUIDKeyReceived   = 252
)

// Well-known object and tree ids.
const (
	RootTreeID         = 1
	ExtentTreeID       = 2
	ChunkTreeID        = 3
	DevTreeID          = 4
	FSTreeID           = 5 // the top-level subvolume
	RootTreeDirID      = 6
	CsumTreeID         = 7
	UUIDTreeID         = 9
	FirstFreeObjectID  = 256 // first inode / subvolume id; also the root dir of every fs tree
	LastFreeObjectID   = ^uint64(0) - 256
	FirstChunkTreeObj  = 256
	ExtentCsumObjectID = ^uint64(0) - 9 // -10
	FreeInoObjectID    = ^uint64(0) - 11
	FreeSpaceObjectID  = ^uint64(0) - 10
	OrphanObjectID     = ^uint64(0) - 4
)
