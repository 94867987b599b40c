package btrfsread

// STUBS owned by the low-level helper (devices, superblock, checksums, chunk
// map, tree blocks, node cache, search, walk, compare). Each stub is replaced
// by a real implementation in its own file and deleted from here.

import "io"

// FS is an open btrfs filesystem (one or more member devices), read-only.
// All methods are safe for concurrent use.
type FS struct {
	// fields are the implementer's
}

// Device is one member device: anything with ReadAt and a size.
type Device struct {
	Name string // for messages
	R    io.ReaderAt
	Size int64
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

// Open opens the device or image files at paths read-only and assembles the
// filesystem they belong to. Every member must be given.
func Open(paths ...string) (*FS, error) { panic("unimplemented") }

// New assembles a filesystem from already opened devices. Close on the
// result does not close them.
func New(devs []Device) (*FS, error) { panic("unimplemented") }

// Close releases the devices Open opened.
func (fs *FS) Close() error { panic("unimplemented") }

// Info returns the superblock facts.
func (fs *FS) Info() Info { panic("unimplemented") }

// Item is one leaf item. Data aliases a cached, immutable tree block: callers
// must not modify it; it stays valid as long as it is referenced.
type Item struct {
	Key  Key
	Data []byte
}

// Tree is one B-tree, identified by its root block. A Tree value is cheap to
// copy and safe for concurrent use.
type Tree struct {
	fs         *FS
	id         uint64
	bytenr     uint64
	level      uint8
	generation uint64
}

// ID returns the tree (root) id.
func (t Tree) ID() uint64 { return t.id }

// treeAt builds a Tree from its root pointer (from a root item or the
// superblock).
func (fs *FS) treeAt(id, bytenr uint64, level uint8, generation uint64) Tree {
	return Tree{fs: fs, id: id, bytenr: bytenr, level: level, generation: generation}
}

// RootTree returns the tree of tree roots.
func (fs *FS) RootTree() Tree { panic("unimplemented") }

// Search returns the item with exactly key k, or ErrNotFound.
func (t Tree) Search(k Key) (Item, error) { panic("unimplemented") }

// SearchBefore returns the last item whose key is <= k, or ErrNotFound.
func (t Tree) SearchBefore(k Key) (Item, error) { panic("unimplemented") }

// ErrStopWalk may be returned by a Walk callback to end the walk early
// without error.
var ErrStopWalk = stopWalk{}

type stopWalk struct{}

func (stopWalk) Error() string { return "walk stopped" }

// Walk calls fn for every item with from <= key <= to, in key order. It reads
// only the blocks that can hold such keys.
func (t Tree) Walk(from, to Key, fn func(Item) error) error { panic("unimplemented") }

// ChangeKind says how an item differs between two trees.
type ChangeKind int

const (
	Added   ChangeKind = iota // only in the left tree
	Deleted                   // only in the right tree
	Changed                   // in both, different bytes
	Same                      // in both, same bytes, but in blocks not shared
)

// Change is one reported difference. Left is nil for Deleted, Right for Added.
type Change struct {
	Kind  ChangeKind
	Key   Key
	Left  []byte
	Right []byte
}

// CompareTrees walks left and right together in key order and calls fn for
// every item in blocks that are not shared; subtrees whose block pointer and
// generation are equal on both sides are skipped, as the kernel's
// btrfs_compare_trees does. fn may return ErrStopWalk.
func CompareTrees(left, right Tree, fn func(Change) error) error { panic("unimplemented") }

// readLogical reads len(p) bytes at logical address from copy number mirror
// (0 <= mirror < copies), splitting at stripe boundaries. It does no checksum
// verification.
func (fs *FS) readLogical(p []byte, logical uint64, mirror int) error { panic("unimplemented") }

// copies returns how many copies of the block at logical exist (1 for
// SINGLE/RAID0, 2 for DUP/RAID1, ...).
func (fs *FS) copies(logical uint64) (int, error) { panic("unimplemented") }

// checksum computes the filesystem's checksum (crc32c, xxhash64, sha256 or
// blake2b-256 per the superblock) of b, in its on-disk byte form, truncated
// to csumSize.
func (fs *FS) checksum(b []byte) []byte { panic("unimplemented") }

// csumSize is the on-disk size of one checksum (4, 8 or 32).
func (fs *FS) csumSize() int { panic("unimplemented") }
