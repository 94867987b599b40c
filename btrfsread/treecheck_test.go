package btrfsread

import (
	"encoding/binary"
	"strings"
	"testing"
)

// regExtent is a regular extent item body.
func regExtent(ram, bytenr, diskLen, off, n uint64) []byte {
	return append(fileExtentHead(ram, CompressNone, ExtentReg), le(bytenr, diskLen, off, n)...)
}

// inodeWith is testInodeBytes with mode, nlink and flags replaced.
func inodeWith(mode, nlink uint32, flags uint64) []byte {
	b := testInodeBytes()
	binary.LittleEndian.PutUint32(b[40:], nlink)
	binary.LittleEndian.PutUint32(b[52:], mode)
	binary.LittleEndian.PutUint64(b[64:], flags)
	return b
}

// TestLeafChecker breaks each tree-checker rule once: the leaf must be
// refused as corrupt, naming the rule; the valid leaf must pass.
func TestLeafChecker(t *testing.T) {
	inode := Item{Key: Key{257, InodeItemKey, 0}, Data: testInodeBytes()}
	ext := func(off uint64, body []byte) Item { return Item{Key: Key{257, ExtentDataKey, off}, Data: body} }
	good := regExtent(8192, 1<<20, 8192, 0, 8192)
	withField := func(b []byte, at int, v byte) []byte {
		c := append([]byte(nil), b...)
		c[at] = v
		return c
	}
	dir := func(loc Key) Item {
		return Item{Key: Key{256, DirItemKey, NameHash([]byte("f"))}, Data: dirEntry(loc, 9, FtRegFile, "f", "")}
	}
	root := testRootItemBytes(20)
	for _, c := range []struct {
		name  string
		items []Item
		want  string
	}{
		{"inline offset", []Item{inode, ext(0, good), ext(8192, append(fileExtentHead(3, CompressNone, ExtentInline), "abc"...))}, "inline extent at file offset"},
		{"valid leaf", []Item{inode, ext(0, good), ext(8192, good)}, ""},
		{"extent type 46", []Item{inode, ext(0, withField(good, 20, 46))}, "invalid file extent type 46"},
		{"extent type 3", []Item{inode, ext(0, withField(good, 20, 3))}, "invalid file extent type 3"},
		{"compression 255", []Item{inode, ext(0, withField(good, 16, 255))}, "invalid compression 255"},
		{"encryption", []Item{inode, ext(0, withField(good, 17, 1))}, "invalid encryption 1"},
		{"other encoding", []Item{inode, ext(0, withField(good, 18, 1))}, "invalid other_encoding 1"},
		{"unaligned file offset", []Item{inode, ext(100, good)}, "file offset 100 not aligned"},
		{"short item", []Item{inode, ext(0, good[:10])}, "file extent is 10 bytes"},
		{"regular size", []Item{inode, ext(0, append(good, 0))}, "regular file extent is 54 bytes"},
		{"unaligned num_bytes", []Item{inode, ext(0, regExtent(8192, 1<<20, 8192, 0, 100))}, "num_bytes 100 not aligned"},
		{"unaligned disk_bytenr", []Item{inode, ext(0, regExtent(8192, 1<<20+1, 8192, 0, 8192))}, "disk_bytenr"},
		{"end overflow", []Item{inode, ext(4096, regExtent(8192, 1<<20, 8192, 0, ^uint64(4095)))}, "extent end overflows"},
		{"range beyond ram_bytes", []Item{inode, ext(0, regExtent(8192, 1<<20, 8192, 4096, 8192))}, "extent range beyond ram_bytes"},
		{"overlap", []Item{inode, ext(0, good), ext(4096, good)}, "previous extent ends at 8192"},
		{"uncompressed inline size", []Item{inode, ext(0, append(fileExtentHead(9, CompressNone, ExtentInline), "abc"...))}, "uncompressed inline extent"},
		{"previous objectid", []Item{inode, {Key: Key{258, ExtentDataKey, 0}, Data: good}}, "previous key objectid is 257"},
		{"inode key offset", []Item{{Key: Key{257, InodeItemKey, 1}, Data: testInodeBytes()}}, "inode key offset 1"},
		{"inode number", []Item{{Key: Key{100, InodeItemKey, 0}, Data: testInodeBytes()}}, "invalid inode number 100"},
		{"inode size", []Item{{Key: Key{257, InodeItemKey, 0}, Data: testInodeBytes()[:150]}}, "inode item is 150 bytes"},
		{"inode mode type", []Item{{Key: Key{257, InodeItemKey, 0}, Data: inodeWith(0o644, 1, 0)}}, "invalid mode"},
		{"inode mode bits", []Item{{Key: Key{257, InodeItemKey, 0}, Data: inodeWith(0o1100644, 1, 0)}}, "invalid mode"},
		{"directory nlink", []Item{{Key: Key{257, InodeItemKey, 0}, Data: inodeWith(0o40755, 2, 0)}}, "directory with nlink 2"},
		{"inode flags", []Item{{Key: Key{257, InodeItemKey, 0}, Data: inodeWith(0o100644, 1, 1<<20)}}, "unknown inode flags"},
		{"inode ro flags", []Item{{Key: Key{257, InodeItemKey, 0}, Data: inodeWith(0o100644, 1, 2<<32)}}, "unknown inode ro flags"},
		{"dir location type", []Item{{Key: Key{256, InodeItemKey, 0}, Data: inodeWith(0o40755, 1, 0)}, dir(Key{258, 5, 0})}, "invalid location key type 5"},
		{"dir location inode", []Item{{Key: Key{256, InodeItemKey, 0}, Data: inodeWith(0o40755, 1, 0)}, dir(Key{7, InodeItemKey, 0})}, "invalid inode number 7"},
		{"dir location tree", []Item{{Key: Key{256, InodeItemKey, 0}, Data: inodeWith(0o40755, 1, 0)}, dir(Key{2, RootItemKey, 0})}, "location key names tree 2"},
		{"root item size", []Item{{Key: Key{256, RootItemKey, 0}, Data: root[:300]}}, "root item is 300 bytes"},
		{"root flags", []Item{{Key: Key{256, RootItemKey, 0}, Data: withField(root, 160+48+2, 1)}}, "unknown root flags"},
		{"root bytenr", []Item{{Key: Key{256, RootItemKey, 0}, Data: withField(root, 160+16, 1)}}, "root bytenr"},
		{"root drop level", []Item{{Key: Key{256, RootItemKey, 0}, Data: withField(root, 237, 9)}}, "drop level 9"},
	} {
		_, err := parseNode(buildLeaf(testRules, 4096, 7, c.items), 4096, testRules)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		case err != nil:
			if _, ok := err.(*CorruptError); !ok {
				t.Errorf("%s: %T is not a CorruptError", c.name, err)
			}
		}
	}
}
