package sendgen

import (
	"fmt"

	"sendfs/btrfsread"
)

// inodeCache remembers the inode items and names one send has read. The
// engine and the namespace check ask for the same few inodes again and again
// (the current one, its directories, the inodes its names overwrite), and
// every path computed walks the first names of its directories: each ask was
// a tree search. A send reads one commit, whose trees do not change, so
// what was read once holds for the whole send. Direct-mapped: a slot keeps
// the last answer that hashes to it.
type inodeCache struct {
	slots    [inodeCacheSlots]inodeSlot
	refSlots [inodeCacheSlots]refSlot
}

const inodeCacheSlots = 512

type inodeSlot struct {
	root   *btrfsread.Subvolume // nil: empty slot
	ino    uint64
	item   btrfsread.InodeItem
	exists bool
}

type refSlot struct {
	root *btrfsread.Subvolume // nil: empty slot
	ino  uint64
	refs []btrfsread.InodeRef
}

// refs returns the names of ino in root (Subvolume.Refs), shared: callers
// must not change them. Every path computed walks its directories' first
// names.
func (c *inodeCache) refs(root *btrfsread.Subvolume, ino uint64) ([]btrfsread.InodeRef, error) {
	sl := &c.refSlots[c.index(root, ino)]
	if sl.root == root && sl.ino == ino {
		return sl.refs, nil
	}
	refs, err := root.Refs(ino)
	if err == nil {
		*sl = refSlot{root: root, ino: ino, refs: refs}
	}
	return refs, err
}

// get returns ino's inode item in root, with exists false when root has no
// such inode (or root is nil).
func (c *inodeCache) get(root *btrfsread.Subvolume, ino uint64) (btrfsread.InodeItem, bool, error) {
	if root == nil {
		return btrfsread.InodeItem{}, false, nil
	}
	sl := c.slot(root, ino)
	if sl.root == root && sl.ino == ino {
		return sl.item, sl.exists, nil
	}
	ii, err := root.Inode(ino)
	exists := err == nil
	if err != nil && !notFound(err) {
		return ii, false, fmt.Errorf("inode %d of subvolume %d: %w", ino, root.ID, err)
	}
	*sl = inodeSlot{root: root, ino: ino, item: ii, exists: exists}
	return ii, exists, nil
}

// put records what the engine read itself: root has ino with item ii, or
// has no such inode (exists false). A nil root is ignored.
func (c *inodeCache) put(root *btrfsread.Subvolume, ino uint64, ii btrfsread.InodeItem, exists bool) {
	if root != nil {
		*c.slot(root, ino) = inodeSlot{root: root, ino: ino, item: ii, exists: exists}
	}
}

func (c *inodeCache) slot(root *btrfsread.Subvolume, ino uint64) *inodeSlot {
	return &c.slots[c.index(root, ino)]
}

func (c *inodeCache) index(root *btrfsread.Subvolume, ino uint64) uint64 {
	return (ino ^ root.ID*0x9e3779b97f4a7c15) % inodeCacheSlots
}

// gen returns ino's generation in root; a missing inode is an error.
func (c *inodeCache) gen(root *btrfsread.Subvolume, ino uint64) (uint64, error) {
	ii, err := c.item(root, ino)
	return ii.Generation, err
}

// item returns ino's inode item in root; a missing inode is an error.
func (c *inodeCache) item(root *btrfsread.Subvolume, ino uint64) (btrfsread.InodeItem, error) {
	ii, ok, err := c.get(root, ino)
	if err == nil && !ok {
		err = fmt.Errorf("inode %d of subvolume %d: %w", ino, root.ID, btrfsread.ErrNotFound)
	}
	return ii, err
}
