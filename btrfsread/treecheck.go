package btrfsread

import (
	"encoding/binary"
	"fmt"
)

// The leaf checker: after the kernel's fs/btrfs/tree-checker.c, every item
// of a leaf is validated when the leaf is read from disk, before anything
// uses it. A leaf that fails is a corrupt block like one with a bad
// checksum (the next mirror is tried), so no read path (full or incremental
// send, the tree comparison, backref walks) can meet an invalid item that
// another path would have refused. The rules are listed in README.md
// (Limits). Every parser the engine uses on an item runs here too, so a
// parse error reaches the caller with the leaf's address; only the extent
// tree's items (not checked here) are parsed first at their use, and
// Item.named gives those errors the address.

// isFSTree reports whether a tree id is a subvolume tree.
func isFSTree(id uint64) bool {
	return id == FSTreeID || id >= FirstFreeObjectID && id <= LastFreeObjectID
}

// Inode flag masks (BTRFS_INODE_FLAG_MASK, BTRFS_INODE_RO_FLAG_MASK).
const (
	inodeFlagMask   = 0xfff | 1<<31 // NODATASUM..COMPRESS, ROOT_ITEM_INIT
	inodeROFlagMask = 1             // VERITY
	rootFlagMask    = RootSubvolReadOnly | 1<<48
)

// checkLeaf validates every item of leaf n (keys are already in order and
// item data inside the block).
func checkLeaf(n *node, r nodeRules) error {
	var prev Key
	for slot := range n.nritems {
		k := n.key(slot)
		if err := checkItem(n, r, slot, k, prev); err != nil {
			return &CorruptError{Logical: n.logical, Reason: fmt.Sprintf("tree %d slot %d %v: %s", int64(n.owner), slot, k, corruptReason(err))}
		}
		prev = k
	}
	return nil
}

// corruptReason is the text of a parser's error without the generic prefix.
func corruptReason(err error) string {
	if ce, ok := err.(*CorruptError); ok {
		if ce.Value != nil {
			return fmt.Sprintf("%s (%v)", ce.Reason, ce.Value)
		}
		return ce.Reason
	}
	return err.Error()
}

func checkItem(n *node, r nodeRules, slot int, k, prev Key) error {
	data := n.itemData(slot)
	switch k.Type {
	case XattrItemKey, InodeRefKey, DirIndexKey, DirItemKey, ExtentDataKey:
		// An inode's items follow its inode item in a subvolume tree.
		if slot > 0 && isFSTree(n.owner) && prev.ObjectID != k.ObjectID {
			return fmt.Errorf("previous key objectid is %d", prev.ObjectID)
		}
	}
	switch k.Type {
	case ExtentDataKey:
		if err := checkFileExtentItem(n, r, slot, k, prev); err != nil {
			return err
		}
		// ParseFileExtent's own range checks, so that no later use of
		// the item meets an error without the leaf's address.
		_, err := ParseFileExtent(data)
		return err
	case DirItemKey, DirIndexKey, XattrItemKey:
		return checkDirItems(k, data, r.nodeSize)
	case InodeRefKey, InodeExtrefKey:
		_, err := ParseInodeRefs(k, data)
		return err
	case InodeItemKey:
		return checkInodeItem(k, data)
	case RootItemKey:
		return checkRootItem(k, data, r.sectorSize)
	case RootRefKey, RootBackrefKey:
		_, err := ParseRootRef(data)
		return err
	}
	return nil
}

// checkInodeKey checks the key of an inode item or a dir item's location.
func checkInodeKey(k Key) error {
	if (k.ObjectID < FirstFreeObjectID || k.ObjectID > LastFreeObjectID) &&
		k.ObjectID != RootTreeDirID && k.ObjectID != FreeInoObjectID {
		return fmt.Errorf("invalid inode number %d", k.ObjectID)
	}
	if k.Offset != 0 {
		return fmt.Errorf("inode key offset %d, want 0", k.Offset)
	}
	return nil
}

func checkInodeItem(k Key, data []byte) error {
	if err := checkInodeKey(k); err != nil {
		return err
	}
	if len(data) != inodeItemSize {
		return fmt.Errorf("inode item is %d bytes, want %d", len(data), inodeItemSize)
	}
	it, err := ParseInodeItem(data)
	if err != nil {
		return err
	}
	// The file type nibble: fifo 1, chr 2, dir 4, blk 6, reg 8, lnk 10,
	// sock 12.
	validType := uint32(1<<1 | 1<<2 | 1<<4 | 1<<6 | 1<<8 | 1<<10 | 1<<12)
	switch {
	case validType&(1<<(it.Mode&sIFMT>>12)) == 0, it.Mode&^(sIFMT|0o7777) != 0:
		return fmt.Errorf("invalid mode 0%o", it.Mode)
	case it.Mode&sIFMT == sIFDIR && it.Nlink > 1:
		return fmt.Errorf("directory with nlink %d", it.Nlink)
	case uint32(it.Flags)&^inodeFlagMask != 0:
		return fmt.Errorf("unknown inode flags 0x%x", uint32(it.Flags))
	case uint32(it.Flags>>32)&^inodeROFlagMask != 0:
		return fmt.Errorf("unknown inode ro flags 0x%x", uint32(it.Flags>>32))
	}
	return nil
}

// checkDirItems validates a DIR_ITEM, DIR_INDEX or XATTR_ITEM: the entries
// as ParseDirItems does, plus their location keys and sizes.
func checkDirItems(k Key, data []byte, nodeSize uint32) error {
	items, err := ParseDirItems(k, data)
	if err != nil {
		return err
	}
	// BTRFS_MAX_XATTR_SIZE: a leaf's data minus one item header and one
	// dir item header.
	maxXattr := int(nodeSize) - headerSize - itemHdrSize - dirItemHeaderSize
	for _, d := range items {
		loc := d.Location
		switch {
		case k.Type == XattrItemKey:
			if loc != (Key{}) {
				return fmt.Errorf("xattr with location key %v", loc)
			}
		case loc.Type == RootItemKey:
			if !isFSTree(loc.ObjectID) {
				return fmt.Errorf("location key names tree %d", int64(loc.ObjectID))
			}
		case loc.Type == InodeItemKey:
			if err := checkInodeKey(loc); err != nil {
				return fmt.Errorf("location key: %w", err)
			}
		default:
			return fmt.Errorf("invalid location key type %d", loc.Type)
		}
		if len(d.Name)+len(d.Data) > maxXattr {
			return fmt.Errorf("name and data are %d bytes, at most %d", len(d.Name)+len(d.Data), maxXattr)
		}
	}
	return nil
}

// checkFileExtentItem validates an EXTENT_DATA item and that it does not
// overlap the previous extent of the same inode.
func checkFileExtentItem(n *node, r nodeRules, slot int, k, prev Key) error {
	data := n.itemData(slot)
	sector := uint64(r.sectorSize)
	if k.Offset%sector != 0 {
		return fmt.Errorf("file offset %d not aligned to %d", k.Offset, sector)
	}
	if len(data) < fileExtentInlineStart {
		return fmt.Errorf("file extent is %d bytes", len(data))
	}
	le := binary.LittleEndian
	ramBytes := le.Uint64(data[8:])
	compression, encryption, otherEncoding, typ := data[16], data[17], le.Uint16(data[18:]), data[20]
	switch {
	case typ > ExtentPrealloc:
		return fmt.Errorf("invalid file extent type %d", typ)
	case compression > CompressZstd:
		return fmt.Errorf("invalid compression %d", compression)
	case encryption != 0:
		return fmt.Errorf("invalid encryption %d", encryption)
	case otherEncoding != 0:
		return fmt.Errorf("invalid other_encoding %d", otherEncoding)
	}
	if typ == ExtentInline {
		switch {
		case k.Offset != 0:
			return fmt.Errorf("inline extent at file offset %d", k.Offset)
		case compression == CompressNone && uint64(len(data)) != fileExtentInlineStart+ramBytes:
			return fmt.Errorf("uncompressed inline extent of %d bytes with ram_bytes %d", len(data)-fileExtentInlineStart, ramBytes)
		}
		return nil
	}
	if len(data) != fileExtentRegSize {
		return fmt.Errorf("regular file extent is %d bytes, want %d", len(data), fileExtentRegSize)
	}
	for _, f := range []struct {
		name string
		off  int
	}{{"ram_bytes", 8}, {"disk_bytenr", 21}, {"disk_num_bytes", 29}, {"offset", 37}, {"num_bytes", 45}} {
		if v := le.Uint64(data[f.off:]); v%sector != 0 {
			return fmt.Errorf("%s %d not aligned to %d", f.name, v, sector)
		}
	}
	numBytes := le.Uint64(data[45:])
	if k.Offset+numBytes < k.Offset {
		return fmt.Errorf("extent end overflows (offset %d, num_bytes %d)", k.Offset, numBytes)
	}
	if slot > 0 && prev.ObjectID == k.ObjectID && prev.Type == ExtentDataKey {
		if end, ok := fileExtentEnd(prev, n.itemData(slot-1), sector); ok && end > k.Offset {
			return fmt.Errorf("previous extent ends at %d, after this one's start", end)
		}
	}
	return nil
}

// fileExtentEnd is the file offset where the extent item (key k, body b,
// already validated) ends; inline extents end at ram_bytes rounded up to a
// sector.
func fileExtentEnd(k Key, b []byte, sector uint64) (uint64, bool) {
	if len(b) < fileExtentInlineStart {
		return 0, false
	}
	if b[20] == ExtentInline {
		ram := binary.LittleEndian.Uint64(b[8:])
		return k.Offset + (ram+sector-1)/sector*sector, true
	}
	if len(b) != fileExtentRegSize {
		return 0, false
	}
	return k.Offset + binary.LittleEndian.Uint64(b[45:]), true
}

// checkRootItem validates a ROOT_ITEM: its size (v1 or v2), block address,
// levels and flags.
func checkRootItem(k Key, data []byte, sectorSize uint32) error {
	if k.ObjectID == 0 {
		return fmt.Errorf("root id 0")
	}
	if len(data) != rootItemV1Size && len(data) != rootItemV2Size {
		return fmt.Errorf("root item is %d bytes, want %d or %d", len(data), rootItemV1Size, rootItemV2Size)
	}
	ri, err := ParseRootItem(data)
	if err != nil {
		return err
	}
	dropLevel := data[rootItemV1Size-2]
	switch {
	case ri.Bytenr%uint64(sectorSize) != 0:
		return fmt.Errorf("root bytenr 0x%x not aligned to %d", ri.Bytenr, sectorSize)
	case dropLevel >= maxTreeLevel:
		return fmt.Errorf("drop level %d", dropLevel)
	case ri.Flags&^rootFlagMask != 0:
		return fmt.Errorf("unknown root flags 0x%x", ri.Flags)
	}
	return nil
}
