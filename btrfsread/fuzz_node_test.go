package btrfsread

import (
	"encoding/binary"
	"testing"
)

// FuzzNode feeds arbitrary blocks to the node parser. The checksum, bytenr
// and fsid are fixed up so that the fuzzer reaches the count and offset
// checks; whatever parses must be safe to read through every accessor.
func FuzzNode(f *testing.F) {
	f.Add(buildLeaf(testRules, 4096, 1, []Item{{Key: Key{1, 1, 0}, Data: []byte("x")}, {Key: Key{2, 1, 0}, Data: []byte("yy")}}))
	f.Add(buildNode(testRules, 4096, 1, 1, []keyPtr{{Key{1, 1, 0}, 8192, 1}, {Key{3, 1, 0}, 12288, 1}}))
	// Leaves the tree checker reads item by item.
	f.Add(buildLeaf(testRules, 4096, 1, []Item{
		{Key: Key{256, InodeItemKey, 0}, Data: inodeWith(0o40755, 1, 0)},
		{Key: Key{256, DirItemKey, NameHash([]byte("f"))}, Data: dirEntry(Key{257, InodeItemKey, 0}, 9, FtRegFile, "f", "")},
		{Key: Key{257, InodeItemKey, 0}, Data: testInodeBytes()},
		{Key: Key{257, ExtentDataKey, 0}, Data: regExtent(8192, 1<<20, 8192, 0, 8192)},
	}))
	f.Add(buildLeaf(testRules, 4096, 1, []Item{{Key: Key{256, RootItemKey, 0}, Data: testRootItemBytes(20)}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		b := make([]byte, testRules.nodeSize)
		copy(b, data)
		binary.LittleEndian.PutUint64(b[headerBytenr:], 4096)
		copy(b[headerFSID:], testRules.fsid[:])
		copy(b, testRules.csum.sum(new([32]byte), b[superCsumEnd:]))
		n, err := parseNode(b, 4096, testRules)
		if err != nil {
			if _, ok := err.(*CorruptError); !ok {
				t.Fatalf("error is not a CorruptError: %v", err)
			}
			return
		}
		for i := range n.nritems {
			k := n.key(i)
			if n.level == 0 {
				_ = n.itemData(i)
			} else {
				n.ptr(i)
			}
			if j, ok := n.search(k); !ok || j != i {
				t.Fatalf("search(%v) = %d %v, want %d", k, j, ok, i)
			}
		}
		n.lastAtOrBefore(Key{ObjectID: 1 << 40})
	})
}
