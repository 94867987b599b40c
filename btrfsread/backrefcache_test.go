package btrfsread

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"sendfs/internal/lru"
)

// TestBackrefCache, on an image the kernel has mounted read-write: a file
// shared by snapshots whose leaf (not the root of its tree) was copied on
// write between them has shared backrefs. A view answers DataBackrefs and
// LeafFileExtents from disk once, then from its cache (no block read, the
// same slices), counting the bytes it keeps; a refreshed view after more
// snapshots and writes answers for its own commit, and the older view keeps
// the answers of its commit.
func TestBackrefCache(t *testing.T) {
	requireTools(t, true, "mkfs.btrfs", "btrfs")
	img := newTestImage(t, 300)
	mnt := mountImage(t, img, "")
	sv := filepath.Join(mnt, "sv")
	run(t, "btrfs", "subvolume", "create", sv)
	for i := range 300 { // a tree of several leaves
		writeFile(t, filepath.Join(sv, fmt.Sprintf("empty%d", i)), nil)
	}
	writeFile(t, filepath.Join(sv, "shared"), textBytes(40000, 1))
	snap := func(i int) {
		writeFile(t, filepath.Join(sv, fmt.Sprintf("f%d", i)), textBytes(5000, i))
		run(t, "btrfs", "subvolume", "snapshot", "-r", sv, filepath.Join(mnt, fmt.Sprintf("s%d", i)))
	}
	for i := range 3 {
		snap(i)
	}
	run(t, "btrfs", "filesystem", "sync", mnt)

	fs, err := Open(img)
	must(t, err)
	defer fs.Close()
	s0, err := fs.FindSubvolume("s0")
	must(t, err)
	ino, err := s0.Lookup("shared")
	must(t, err)
	var bytenr uint64
	must(t, s0.Extents(ino, 0, func(_ uint64, e *FileExtent) error { bytenr = e.DiskBytenr; return ErrStopWalk }))

	refs, brs, err := fs.DataBackrefs(bytenr)
	must(t, err)
	var leaves []uint64
	for _, br := range brs {
		if br.Parent != 0 {
			leaves = append(leaves, br.Parent)
		}
	}
	if len(leaves) < 2 {
		t.Fatalf("not two shared backrefs for an extent of 3 snapshots copied on write: refs %d, %+v", refs, brs)
	}
	leaf := leaves[0]
	items, err := fs.LeafFileExtents(leaf)
	must(t, err)
	at := ExtentsAt(items, bytenr)
	if len(at) != 1 || at[0].Key != (Key{ino, ExtentDataKey, 0}) {
		t.Fatalf("items of the leaf at %d pointing to %d: %+v", leaf, bytenr, at)
	}
	for i := 1; i < len(items); i++ {
		if items[i-1].Extent.DiskBytenr > items[i].Extent.DiskBytenr {
			t.Fatalf("leaf items not sorted by extent: %+v", items)
		}
	}

	reads := fs.diskBlockReads.Load()
	refs2, brs2, err := fs.DataBackrefs(bytenr)
	must(t, err)
	items2, err := fs.LeafFileExtents(leaf)
	must(t, err)
	if refs2 != refs || &brs2[0] != &brs[0] || &items2[0] != &items[0] || fs.diskBlockReads.Load() != reads {
		t.Errorf("second lookups not answered from the cache (%d blocks read)", fs.diskBlockReads.Load()-reads)
	}
	c := &fs.backrefs
	if want := int64(backrefEntryBytes + dataBackrefBytes*len(brs)); c.refs.Len() != 1 || c.refs.Used() != want {
		t.Errorf("backref cache holds %d values in %d bytes, want 1 in %d", c.refs.Len(), c.refs.Used(), want)
	}
	if want := int64(backrefEntryBytes + leafFileExtentBytes*len(items)); c.leaves.Used() != want {
		t.Errorf("leaf cache holds %d bytes, want %d", c.leaves.Used(), want)
	}
	// The bound: with room for one leaf's items, a second leaf evicts it.
	bound := int64(0)
	for _, l := range leaves[:2] {
		items, err := fs.LeafFileExtents(l)
		must(t, err)
		bound = max(bound, leafExtentsSize(items))
	}
	c.leaves = lru.New[uint64](bound, leafExtentsSize)
	for _, l := range leaves[:2] {
		_, err := fs.LeafFileExtents(l)
		must(t, err)
	}
	if c.leaves.Len() != 1 || c.leaves.Contains(leaves[0]) || !c.leaves.Contains(leaves[1]) {
		t.Errorf("a cache bounded to one leaf holds %d leaves (first: %v)", c.leaves.Len(), c.leaves.Contains(leaves[0]))
	}

	// More snapshots and writes: the extent gains references.
	for i := 3; i < 6; i++ {
		snap(i)
	}
	run(t, "btrfs", "filesystem", "sync", mnt)
	v, err := fs.Refresh()
	must(t, err)
	if v == fs {
		t.Fatal("no newer view after a commit")
	}
	newRefs, newBrs, err := v.DataBackrefs(bytenr)
	must(t, err)
	diskRefs, diskBrs, err := v.readDataBackrefs(bytenr)
	must(t, err)
	if newRefs != diskRefs || !reflect.DeepEqual(newBrs, diskBrs) {
		t.Errorf("newer view: %d %+v, its commit has %d %+v", newRefs, newBrs, diskRefs, diskBrs)
	}
	if newRefs <= refs {
		t.Errorf("references after 3 more snapshots: %d, before %d", newRefs, refs)
	}
	oldRefs, oldBrs, err := fs.DataBackrefs(bytenr)
	must(t, err)
	if oldRefs != refs || &oldBrs[0] != &brs[0] {
		t.Errorf("older view changed its answer: %d, was %d", oldRefs, refs)
	}
	checkUnvouchedLeaf(t, v, leaf)
}

// checkUnvouchedLeaf: the leaf at logical, read as a shared backref reads
// it (no parent's generation), comes from disk unless the cached block was
// read from disk for this view's commit or a later one, and a block written
// after the view's commit is stale, not an answer.
func checkUnvouchedLeaf(t *testing.T, fs *FS, logical uint64) {
	t.Helper()
	read := func() (*node, int64) {
		before := fs.diskBlockReads.Load()
		n, err := fs.readBlock(logical, blockWant{level: 0})
		must(t, err)
		return n, fs.diskBlockReads.Load() - before
	}
	n, _ := read()
	if n.readAt != fs.Generation() {
		t.Fatalf("leaf read for generation %d stamped %d", fs.Generation(), n.readAt)
	}
	if _, reads := read(); reads != 0 {
		t.Errorf("a leaf read for this view was read again (%d reads)", reads)
	}
	old := *n
	old.readAt = fs.Generation() - 1
	fs.blocks.Put(logical, &old)
	if _, reads := read(); reads == 0 {
		t.Error("a leaf cached before this view's commit answered a read no parent vouches for")
	}
	gen := fs.sb.generation
	defer func() { fs.sb.generation = gen }()
	fs.sb.generation = n.generation - 1
	if _, err := fs.readBlock(logical, blockWant{level: 0}); !Stale(err) {
		t.Errorf("a leaf written after the view's commit: %v, want a stale block", err)
	}
}
