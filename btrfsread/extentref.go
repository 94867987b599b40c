package btrfsread

import "fmt"

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
		return 0, fmt.Errorf("extent item of 0x%x: %w", bytenr, err)
	}
	return e.Refs, nil
}
