package btrfsread

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// itemCursor reads little-endian fields from an item body. The first read
// past the end records a *CorruptError and every later read returns zeros,
// so a parser checks c.err once at the end instead of after every field.
type itemCursor struct {
	b    []byte
	off  int
	what string // item kind, for the error
	err  error
}

func newItemCursor(b []byte, what string) *itemCursor {
	return &itemCursor{b: b, what: what}
}

func (c *itemCursor) left() int { return len(c.b) - c.off }

// take returns the next n bytes, or nil after recording an overrun.
func (c *itemCursor) take(n int) []byte {
	if c.err != nil {
		return nil
	}
	if n < 0 || n > c.left() {
		c.err = &CorruptError{Reason: c.what + " truncated", Value: fmt.Sprintf("need %d bytes at %d of %d", n, c.off, len(c.b))}
		return nil
	}
	s := c.b[c.off : c.off+n : c.off+n]
	c.off += n
	return s
}

func (c *itemCursor) u8() uint8 {
	if s := c.take(1); s != nil {
		return s[0]
	}
	return 0
}

func (c *itemCursor) u16() uint16 {
	if s := c.take(2); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

func (c *itemCursor) u32() uint32 {
	if s := c.take(4); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (c *itemCursor) u64() uint64 {
	if s := c.take(8); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

func (c *itemCursor) key() Key {
	return Key{ObjectID: c.u64(), Type: c.u8(), Offset: c.u64()}
}

func (c *itemCursor) timespec() Timespec {
	return Timespec{Sec: c.u64(), Nsec: c.u32()}
}

func (c *itemCursor) uuid() (u UUID) {
	copy(u[:], c.take(16))
	return u
}

// skip advances n bytes (reserved fields).
func (c *itemCursor) skip(n int) { c.take(n) }

// corrupt records a validation failure unless an earlier one is pending.
func (c *itemCursor) corrupt(reason string, v any) {
	if c.err == nil {
		c.err = &CorruptError{Reason: c.what + ": " + reason, Value: v}
	}
}

// validName checks a file name read from disk: 1-255 bytes, no '/', no NUL,
// not "." or "..".
func validName(name []byte) error {
	switch {
	case len(name) == 0 || len(name) > 255:
		return &CorruptError{Reason: "bad name length", Value: len(name)}
	case bytes.IndexByte(name, '/') >= 0 || bytes.IndexByte(name, 0) >= 0:
		return &CorruptError{Reason: "name contains '/' or NUL", Value: fmt.Sprintf("%q", name)}
	case string(name) == "." || string(name) == "..":
		return &CorruptError{Reason: "name is . or ..", Value: string(name)}
	}
	return nil
}

// validXattrName checks an xattr name: 1-255 bytes, no NUL ('/' is allowed).
func validXattrName(name []byte) error {
	if len(name) == 0 || len(name) > 255 || bytes.IndexByte(name, 0) >= 0 {
		return &CorruptError{Reason: "bad xattr name", Value: fmt.Sprintf("%q", name)}
	}
	return nil
}

// NameHash is the key offset of a DIR_ITEM or XATTR_ITEM: raw crc32c of the
// name with seed 0xFFFFFFFE and no final inversion.
func NameHash(name []byte) uint64 {
	return uint64(^crc32.Update(1, crc32cTable, name))
}

// ExtrefHash is the key offset of an INODE_EXTREF: raw crc32c of the name
// seeded with the parent inode number.
func ExtrefHash(parent uint64, name []byte) uint64 {
	return uint64(^crc32.Update(^uint32(parent), crc32cTable, name))
}

// inodeItemSize is the on-disk size of btrfs_inode_item.
const inodeItemSize = 160

// ParseInodeItem decodes an INODE_ITEM body.
func ParseInodeItem(b []byte) (InodeItem, error) {
	c := newItemCursor(b, "inode item")
	if len(b) < inodeItemSize {
		c.corrupt("too short", len(b))
		return InodeItem{}, c.err
	}
	return parseInodeItem(c), c.err
}

// parseInodeItem reads the 160-byte inode item at the cursor (also embedded
// in root items).
func parseInodeItem(c *itemCursor) InodeItem {
	var it InodeItem
	it.Generation = c.u64()
	it.Transid = c.u64()
	it.Size = c.u64()
	it.Nbytes = c.u64()
	c.skip(8) // block_group
	it.Nlink = c.u32()
	it.UID = c.u32()
	it.GID = c.u32()
	it.Mode = c.u32()
	it.Rdev = c.u64()
	it.Flags = c.u64()
	c.skip(8 + 32) // sequence, reserved
	it.Atime = c.timespec()
	it.Ctime = c.timespec()
	it.Mtime = c.timespec()
	it.Otime = c.timespec()
	return it
}

// ParseInodeRefs decodes an INODE_REF (parent = key.Offset) or INODE_EXTREF
// item into its names, validating each name.
func ParseInodeRefs(k Key, b []byte) ([]InodeRef, error) {
	var fixed int // bytes before each name
	switch k.Type {
	case InodeRefKey:
		fixed = 8 + 2
	case InodeExtrefKey:
		fixed = 8 + 8 + 2
	default:
		return nil, &CorruptError{Reason: "not an inode ref key", Value: k}
	}
	c := newItemCursor(b, "inode ref")
	refs := make([]InodeRef, 0, min(len(b)/(fixed+1), 16))
	for c.left() > 0 && c.err == nil {
		r := InodeRef{Parent: k.Offset}
		if k.Type == InodeExtrefKey {
			r.Parent = c.u64()
		}
		r.Index = c.u64()
		r.Name = c.take(int(c.u16()))
		if c.err != nil {
			break
		}
		// A subvolume's root directory names itself ".." (its only ref).
		rootSelfRef := k.Type == InodeRefKey && k.ObjectID == k.Offset && string(r.Name) == ".."
		if err := validName(r.Name); err != nil && !rootSelfRef {
			return nil, err
		}
		if k.Type == InodeExtrefKey && ExtrefHash(r.Parent, r.Name) != k.Offset {
			return nil, &CorruptError{Reason: "extref hash does not match key", Value: fmt.Sprintf("%q in %v", r.Name, k)}
		}
		refs = append(refs, r)
	}
	if c.err == nil && len(refs) == 0 {
		c.corrupt("empty", k)
	}
	return refs, c.err
}

// dirItemHeaderSize is the fixed part of a btrfs_dir_item before its name.
const dirItemHeaderSize = 17 + 8 + 2 + 2 + 1

// ParseDirItems decodes a DIR_ITEM, DIR_INDEX or XATTR_ITEM body (several
// entries may share one item). Names of non-xattr entries are validated, and
// the name hash of DIR_ITEM and XATTR_ITEM entries is checked against the key.
func ParseDirItems(k Key, b []byte) ([]DirItem, error) {
	xattr := k.Type == XattrItemKey
	if !xattr && k.Type != DirItemKey && k.Type != DirIndexKey {
		return nil, &CorruptError{Reason: "not a dir item key", Value: k}
	}
	c := newItemCursor(b, "dir item")
	items := make([]DirItem, 0, min(len(b)/(dirItemHeaderSize+1), 16))
	for c.left() > 0 && c.err == nil {
		var d DirItem
		d.Location = c.key()
		d.Transid = c.u64()
		dataLen := int(c.u16())
		nameLen := int(c.u16())
		d.Type = c.u8()
		d.Name = c.take(nameLen)
		d.Data = c.take(dataLen)
		if c.err != nil {
			break
		}
		if err := checkDirItem(k, &d); err != nil {
			return nil, err
		}
		items = append(items, d)
	}
	if c.err == nil && len(items) == 0 {
		c.corrupt("empty", k)
	}
	return items, c.err
}

// checkDirItem validates one decoded entry of the item with key k.
func checkDirItem(k Key, d *DirItem) error {
	xattr := k.Type == XattrItemKey
	switch {
	case xattr != (d.Type == FtXattr):
		return &CorruptError{Reason: "dir item type does not match its key", Value: fmt.Sprintf("type %d in %v", d.Type, k)}
	case d.Type > FtXattr:
		return &CorruptError{Reason: "bad dir item type", Value: d.Type}
	case !xattr && len(d.Data) != 0:
		return &CorruptError{Reason: "dir entry with data", Value: len(d.Data)}
	}
	var err error
	if xattr {
		err = validXattrName(d.Name)
	} else {
		err = validName(d.Name)
	}
	if err != nil {
		return err
	}
	if k.Type != DirIndexKey && NameHash(d.Name) != k.Offset {
		return &CorruptError{Reason: "name hash does not match key", Value: fmt.Sprintf("%q in %v", d.Name, k)}
	}
	return nil
}

// Fixed sizes of EXTENT_DATA items.
const (
	fileExtentInlineStart = 21
	fileExtentRegSize     = 53
	// maxCompressedRam is BTRFS_MAX_UNCOMPRESSED: no compressed extent
	// decompresses to more.
	maxCompressedRam = 128 << 10
)

// ParseFileExtent decodes an EXTENT_DATA body.
func ParseFileExtent(b []byte) (FileExtent, error) {
	c := newItemCursor(b, "file extent")
	var e FileExtent
	e.Generation = c.u64()
	e.RamBytes = c.u64()
	e.Compression = c.u8()
	encryption := c.u8()
	otherEncoding := c.u16()
	e.Type = c.u8()
	if c.err != nil {
		return FileExtent{}, c.err
	}
	if encryption != 0 || otherEncoding != 0 {
		return FileExtent{}, fmt.Errorf("%w: file extent encryption %d, encoding %d", ErrUnsupported, encryption, otherEncoding)
	}
	if e.Compression > CompressZstd {
		return FileExtent{}, fmt.Errorf("%w: compression type %d", ErrUnsupported, e.Compression)
	}
	switch e.Type {
	case ExtentInline:
		e.Inline = c.take(c.left())
		if e.Compression == CompressNone && e.RamBytes != uint64(len(e.Inline)) {
			c.corrupt("inline length differs from ram_bytes", fmt.Sprintf("%d != %d", len(e.Inline), e.RamBytes))
		}
	case ExtentReg, ExtentPrealloc:
		if len(b) != fileExtentRegSize {
			c.corrupt("bad size", len(b))
			break
		}
		e.DiskBytenr = c.u64()
		e.DiskNumBytes = c.u64()
		e.Offset = c.u64()
		e.NumBytes = c.u64()
		checkRegExtent(c, &e)
	default:
		c.corrupt("bad type", e.Type)
	}
	if e.Compression != CompressNone && e.RamBytes > maxCompressedRam {
		c.corrupt("compressed extent too large", e.RamBytes)
	}
	if c.err != nil {
		return FileExtent{}, c.err
	}
	return e, nil
}

// checkRegExtent validates the ranges of a regular or prealloc extent.
func checkRegExtent(c *itemCursor, e *FileExtent) {
	end := e.Offset + e.NumBytes
	switch {
	case end < e.Offset:
		c.corrupt("offset+num_bytes overflows", end)
	case e.Type == ExtentPrealloc && e.Compression != CompressNone:
		c.corrupt("compressed prealloc extent", e.Compression)
	case e.DiskBytenr == 0: // hole: nothing on disk to check against
	case e.DiskBytenr+e.DiskNumBytes < e.DiskBytenr:
		c.corrupt("disk range overflows", e.DiskBytenr)
	case end > e.RamBytes:
		c.corrupt("extent range beyond ram_bytes", fmt.Sprintf("%d+%d > %d", e.Offset, e.NumBytes, e.RamBytes))
	case e.Compression == CompressNone && e.RamBytes > e.DiskNumBytes:
		c.corrupt("uncompressed ram_bytes beyond disk_num_bytes", fmt.Sprintf("%d > %d", e.RamBytes, e.DiskNumBytes))
	}
}

// Root item layout facts.
const (
	rootItemV1Size = 239 // up to and including level
	rootItemV2Size = 439
)

// ParseRootItem decodes a ROOT_ITEM body. The v2 fields are left zero when
// the item is short or its generation_v2 does not match (an old kernel wrote
// it last).
func ParseRootItem(b []byte) (RootItem, error) {
	c := newItemCursor(b, "root item")
	if len(b) < rootItemV1Size {
		c.corrupt("too short", len(b))
		return RootItem{}, c.err
	}
	var r RootItem
	r.Inode = parseInodeItem(c)
	r.Generation = c.u64()
	r.RootDirID = c.u64()
	r.Bytenr = c.u64()
	c.skip(8 + 8 + 8) // byte_limit, bytes_used, last_snapshot
	r.Flags = c.u64()
	r.Refs = c.u32()
	c.skip(17 + 1) // drop_progress, drop_level
	r.Level = c.u8()
	if len(b) >= rootItemV2Size {
		if c.u64() == r.Generation {
			r.UUID = c.uuid()
			r.ParentUUID = c.uuid()
			r.ReceivedUUID = c.uuid()
			r.CTransid = c.u64()
			r.OTransid = c.u64()
			r.STransid = c.u64()
			r.RTransid = c.u64()
			r.CTime = c.timespec()
			r.OTime = c.timespec()
			r.STime = c.timespec()
			r.RTime = c.timespec()
		}
	}
	if r.Level >= 8 {
		c.corrupt("bad level", r.Level)
	}
	if c.err != nil {
		return RootItem{}, c.err
	}
	return r, nil
}

// ParseRootRef decodes a ROOT_REF or ROOT_BACKREF body.
func ParseRootRef(b []byte) (RootRef, error) {
	c := newItemCursor(b, "root ref")
	var r RootRef
	r.DirID = c.u64()
	r.Sequence = c.u64()
	r.Name = c.take(int(c.u16()))
	if c.err == nil && c.left() != 0 {
		c.corrupt("trailing bytes", c.left())
	}
	if c.err != nil {
		return RootRef{}, c.err
	}
	if err := validName(r.Name); err != nil {
		return RootRef{}, err
	}
	return r, nil
}
