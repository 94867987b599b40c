package btrfsread

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// Builders of synthetic tree blocks and a tiny in-memory filesystem, for
// tests and fuzz targets that need no btrfs-progs.

var testFSID = UUID{0xf5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

var testRules = nodeRules{nodeSize: 4096, sectorSize: 4096, fsid: testFSID, csum: csumAlgos[CsumCRC32C]}

func putDiskKey(b []byte, k Key) {
	binary.LittleEndian.PutUint64(b, k.ObjectID)
	b[8] = k.Type
	binary.LittleEndian.PutUint64(b[9:], k.Offset)
}

// finishBlock fills the header of b and its checksum.
func finishBlock(b []byte, r nodeRules, logical, gen uint64, level uint8, nritems int) []byte {
	le := binary.LittleEndian
	copy(b[headerFSID:], r.fsid[:])
	le.PutUint64(b[headerBytenr:], logical)
	le.PutUint64(b[56:], 1) // WRITTEN
	le.PutUint64(b[headerGen:], gen)
	le.PutUint64(b[headerOwner:], 5)
	le.PutUint32(b[headerNr:], uint32(nritems))
	b[headerLevel] = level
	copy(b, r.csum.sum(new([32]byte), b[superCsumEnd:]))
	return b
}

// buildLeaf makes a valid leaf holding items (in the given order).
func buildLeaf(r nodeRules, logical, gen uint64, items []Item) []byte {
	b := make([]byte, r.nodeSize)
	end := uint32(len(b) - headerSize)
	for i, it := range items {
		end -= uint32(len(it.Data))
		h := b[headerSize+i*itemHdrSize:]
		putDiskKey(h, it.Key)
		binary.LittleEndian.PutUint32(h[17:], end)
		binary.LittleEndian.PutUint32(h[21:], uint32(len(it.Data)))
		copy(b[headerSize+int(end):], it.Data)
	}
	return finishBlock(b, r, logical, gen, 0, len(items))
}

// keyPtr is one pointer of an internal node.
type keyPtr struct {
	key         Key
	bytenr, gen uint64
}

func buildNode(r nodeRules, logical, gen uint64, level uint8, ptrs []keyPtr) []byte {
	b := make([]byte, r.nodeSize)
	for i, p := range ptrs {
		h := b[headerSize+i*keyPtrSize:]
		putDiskKey(h, p.key)
		binary.LittleEndian.PutUint64(h[17:], p.bytenr)
		binary.LittleEndian.PutUint64(h[25:], p.gen)
	}
	return finishBlock(b, r, logical, gen, level, len(ptrs))
}

func TestParseNode(t *testing.T) {
	items := []Item{{Key: Key{1, 3, 0}, Data: []byte("one")}, {Key: Key{1, 4, 0}, Data: nil}, {Key: Key{2, 3, 5}, Data: []byte("three")}}
	b := buildLeaf(testRules, 1<<20, 7, items)
	n, err := parseNode(b, 1<<20, testRules)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range items {
		if got := n.item(i); got.Key != it.Key || string(got.Data) != string(it.Data) {
			t.Errorf("item %d = %v %q", i, got.Key, got.Data)
		}
	}
	if d := n.itemData(0); cap(d) != len(d) {
		t.Error("item data can be appended into the block")
	}
	if i, ok := n.search(Key{1, 4, 0}); !ok || i != 1 {
		t.Errorf("search exact: %d %v", i, ok)
	}
	if i := n.lastAtOrBefore(Key{2, 0, 0}); i != 1 {
		t.Errorf("lastAtOrBefore: %d", i)
	}
	if i := n.lastAtOrBefore(Key{0, 0, 0}); i != -1 {
		t.Errorf("lastAtOrBefore before all: %d", i)
	}

	bad := []struct {
		name   string
		edit   func(b []byte)
		reason string
	}{
		{"checksum", func(b []byte) { b[4000] ^= 1 }, "checksum mismatch"},
		{"bytenr", func(b []byte) { binary.LittleEndian.PutUint64(b[headerBytenr:], 4096) }, "header bytenr"},
		{"fsid", func(b []byte) { b[headerFSID] ^= 1 }, "fsid"},
		{"level", func(b []byte) { b[headerLevel] = 8 }, "level 8"},
		{"nritems", func(b []byte) { binary.LittleEndian.PutUint32(b[headerNr:], 1000) }, "does not fit"},
		{"item offset", func(b []byte) { binary.LittleEndian.PutUint32(b[headerSize+17:], 4000) }, "outside the leaf"},
		{"item over headers", func(b []byte) { binary.LittleEndian.PutUint32(b[headerSize+17:], 10) }, "outside the leaf"},
		{"key order", func(b []byte) { putDiskKey(b[headerSize:], Key{9, 9, 9}) }, "out of order"},
	}
	for _, c := range bad {
		b := buildLeaf(testRules, 1<<20, 7, items)
		c.edit(b)
		if c.name != "checksum" {
			copy(b, testRules.csum.sum(new([32]byte), b[superCsumEnd:]))
		}
		_, err := parseNode(b, 1<<20, testRules)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Logical != 1<<20 || !strings.Contains(ce.Reason, c.reason) {
			t.Errorf("%s: %v, want a CorruptError about %q", c.name, err, c.reason)
		}
	}

	node := buildNode(testRules, 8192, 7, 1, []keyPtr{{Key{1, 1, 0}, 0, 7}})
	if _, err := parseNode(node, 8192, testRules); err == nil || !strings.Contains(err.Error(), "invalid block pointer") {
		t.Errorf("node with a zero pointer: %v", err)
	}
	node = buildNode(testRules, 8192, 7, 1, nil)
	if _, err := parseNode(node, 8192, testRules); err == nil {
		t.Error("node without pointers accepted")
	}
}

func TestBlockWant(t *testing.T) {
	n, err := parseNode(buildLeaf(testRules, 4096, 7, []Item{{Key: Key{5, 3, 0}, Data: nil}}), 4096, testRules)
	if err != nil {
		t.Fatal(err)
	}
	k := Key{5, 3, 0}
	other := Key{6, 3, 0}
	for _, c := range []struct {
		want blockWant
		ok   bool
	}{
		{blockWant{level: 0, generation: 7, firstKey: &k}, true},
		{blockWant{level: 0}, true},
		{blockWant{level: 1, generation: 7}, false},
		{blockWant{level: 0, generation: 8}, false},
		{blockWant{level: 0, generation: 7, firstKey: &other}, false},
	} {
		if err := c.want.check(n); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.want, err)
		}
	}
}
