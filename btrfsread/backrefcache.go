package btrfsread

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	"sendfs/internal/lru"
)

// backrefCache keeps what the send engine's clone search asks of one view
// again and again: the back references of a data extent, and the file
// extent items of the leaves that shared back references name. The
// incremental streams of one snapshot from each of its parents ask the same
// questions for every parent (a mount lists them all at once), and so do the
// extents of one file shared by many snapshots.
//
// Each view has its own: a newer commit may free an extent or a leaf and
// reuse its address, so answers are never carried from one commit to
// another. A view's commit does not change, so within it an answer holds.
type backrefCache struct {
	once   sync.Once
	refs   *lru.Cache[uint64, dataBackrefs]     // by data extent bytenr
	leaves *lru.Cache[uint64, []LeafFileExtent] // by leaf logical address
}

// Bounds of a view's backref cache. An extent's backrefs take tens of
// bytes per reference; a leaf's file extent items about 100 bytes each, a
// few hundred per 16 KiB leaf.
const (
	backrefCacheBytes   = 8 << 20
	leafExtentsBytes    = 16 << 20
	backrefEntryBytes   = 64 // bookkeeping per cached value
	dataBackrefBytes    = 32
	leafFileExtentBytes = 104
)

type dataBackrefs struct {
	refs uint64
	brs  []DataBackref
}

func (c *backrefCache) init() *backrefCache {
	c.once.Do(func() {
		c.refs = lru.New[uint64](backrefCacheBytes, dataBackrefsSize)
		c.leaves = lru.New[uint64](leafExtentsBytes, leafExtentsSize)
	})
	return c
}

func dataBackrefsSize(d dataBackrefs) int64 {
	return backrefEntryBytes + dataBackrefBytes*int64(len(d.brs))
}

func leafExtentsSize(l []LeafFileExtent) int64 {
	return backrefEntryBytes + leafFileExtentBytes*int64(len(l))
}

// DataBackrefs returns the total reference count of the data extent that
// starts at bytenr and its back references, inline and keyed, in key order.
// The answer is cached for the view; brs is shared and must not be changed.
func (fs *FS) DataBackrefs(bytenr uint64) (refs uint64, brs []DataBackref, err error) {
	d, err := fs.backrefs.init().refs.Get(bytenr, func() (dataBackrefs, error) {
		refs, brs, err := fs.readDataBackrefs(bytenr)
		return dataBackrefs{refs, brs}, err
	})
	return d.refs, d.brs, err
}

// LeafFileExtent is a file extent item of a tree leaf that points to a data
// extent (not inline): the item's key and its body.
type LeafFileExtent struct {
	Key    Key
	Extent FileExtent
}

// LeafFileExtents returns the file extent items of the tree leaf at logical
// (a shared data backref's parent) that point to data extents, sorted by
// the extent's DiskBytenr (then by key), for ExtentsAt. The answer is cached
// for the view and shared: it must not be changed.
func (fs *FS) LeafFileExtents(logical uint64) ([]LeafFileExtent, error) {
	return fs.backrefs.init().leaves.Get(logical, func() ([]LeafFileExtent, error) {
		n, err := fs.readBlock(logical, blockWant{level: 0})
		if err != nil {
			return nil, err
		}
		var out []LeafFileExtent
		for i := range n.nritems {
			it := n.item(i)
			if it.Key.Type != ExtentDataKey {
				continue
			}
			fe, err := ParseFileExtent(it.Data)
			if err != nil {
				return nil, fmt.Errorf("file extent item %v in the leaf at logical %d: %w", it.Key, logical, err)
			}
			if fe.Type != ExtentInline {
				fe.Inline = nil
				out = append(out, LeafFileExtent{Key: it.Key, Extent: fe})
			}
		}
		slices.SortFunc(out, func(a, b LeafFileExtent) int {
			return cmp.Or(cmp.Compare(a.Extent.DiskBytenr, b.Extent.DiskBytenr), a.Key.Compare(b.Key))
		})
		return out, nil
	})
}

// ExtentsAt returns the items of l (from LeafFileExtents) that point to the
// data extent at bytenr.
func ExtentsAt(l []LeafFileExtent, bytenr uint64) []LeafFileExtent {
	i, _ := slices.BinarySearchFunc(l, bytenr, func(e LeafFileExtent, b uint64) int { return cmp.Compare(e.Extent.DiskBytenr, b) })
	j := i
	for j < len(l) && l[j].Extent.DiskBytenr == bytenr {
		j++
	}
	return l[i:j]
}
