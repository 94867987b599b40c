package btrfsread

import "fmt"

// The extent tree's view of data extents: how many references an extent
// has and where they are (back references), for finding where else an
// extent is used (the send engine clones from there instead of writing the
// data again).

// DataBackref is one back reference of a data extent. A direct reference
// names the root, inode and Offset (the file offset minus the file extent's
// data offset); a shared reference names only the Parent leaf that holds
// the referencing file extent items.
type DataBackref struct {
	Root, Ino, Offset uint64
	Parent            uint64
}

// Inline reference types of extent items.
const extentOwnerRefKey = 172

// readDataBackrefs reads what DataBackrefs returns from the extent tree.
func (fs *FS) readDataBackrefs(bytenr uint64) (refs uint64, brs []DataBackref, err error) {
	t, err := fs.Tree(ExtentTreeID)
	if err != nil {
		return 0, nil, err
	}
	from := Key{ObjectID: bytenr, Type: ExtentItemKey}
	to := Key{ObjectID: bytenr, Type: SharedDataRefKey, Offset: ^uint64(0)}
	found := false
	err = t.Walk(from, to, func(it Item) error {
		switch it.Key.Type {
		case ExtentItemKey:
			found = true
			var inline []DataBackref
			refs, inline, err = parseDataExtentItem(it.Data)
			brs = append(brs, inline...)
			return it.named(err)
		case ExtentDataRefKey:
			c := newItemCursor(it.Data, "extent data ref")
			br := DataBackref{Root: c.u64(), Ino: c.u64(), Offset: c.u64()}
			brs = append(brs, br)
			return it.named(c.err)
		case SharedDataRefKey:
			brs = append(brs, DataBackref{Parent: it.Key.Offset})
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if !found {
		return 0, nil, ErrNotFound
	}
	return refs, brs, nil
}

// parseDataExtentItem decodes a data EXTENT_ITEM: its head and inline refs.
func parseDataExtentItem(b []byte) (uint64, []DataBackref, error) {
	c := newItemCursor(b, "extent item")
	refs := c.u64()
	c.skip(8) // generation
	flags := c.u64()
	if c.err != nil {
		return 0, nil, c.err
	}
	if flags&ExtentFlagData == 0 {
		return 0, nil, &CorruptError{Reason: "extent item of a data extent lacks the data flag", Value: flags}
	}
	var brs []DataBackref
	for c.left() > 0 && c.err == nil {
		switch typ := c.u8(); typ {
		case ExtentDataRefKey:
			brs = append(brs, DataBackref{Root: c.u64(), Ino: c.u64(), Offset: c.u64()})
			c.skip(4) // count
		case SharedDataRefKey:
			brs = append(brs, DataBackref{Parent: c.u64()})
			c.skip(4) // count
		case extentOwnerRefKey:
			c.skip(8)
		default:
			return 0, nil, &CorruptError{Reason: "unknown inline backref type in data extent item", Value: typ}
		}
	}
	return refs, brs, c.err
}

// Extent item flags.
const (
	ExtentFlagData      = 1
	ExtentFlagTreeBlock = 2
)

// ExtentItem is the fixed head of an EXTENT_ITEM or METADATA_ITEM: how many
// references the extent has in total (inline and keyed backrefs together).
type ExtentItem struct {
	Refs       uint64
	Generation uint64
	Flags      uint64
}

// ParseExtentItem decodes the head of an EXTENT_ITEM or METADATA_ITEM body;
// the inline backrefs that follow are not decoded.
func ParseExtentItem(b []byte) (ExtentItem, error) {
	c := newItemCursor(b, "extent item")
	e := ExtentItem{Refs: c.u64(), Generation: c.u64(), Flags: c.u64()}
	if c.err != nil {
		return ExtentItem{}, c.err
	}
	return e, nil
}

// ExtentRefs returns how many references the data extent starting at logical
// bytenr has (file extent items in all trees, counted by the extent tree),
// from its EXTENT_ITEM (bytenr, 168, length). The send engine uses it to tell
// shared extents, which may be cloned, from private ones.
func (fs *FS) ExtentRefs(bytenr uint64) (uint64, error) {
	t, err := fs.Tree(ExtentTreeID)
	if err != nil {
		return 0, err
	}
	it, err := t.SearchBefore(Key{bytenr, ExtentItemKey, ^uint64(0)})
	if err == nil && (it.Key.ObjectID != bytenr || it.Key.Type != ExtentItemKey) {
		err = ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("extent item of 0x%x: %w", bytenr, err)
	}
	e, err := ParseExtentItem(it.Data)
	if err != nil {
		return 0, fmt.Errorf("extent item of 0x%x: %w", bytenr, it.named(err))
	}
	return e.Refs, nil
}
