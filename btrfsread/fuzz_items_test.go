package btrfsread

import (
	"testing"
)

// parseAll runs every item parser over b under each key type they accept.
func parseAll(b []byte) {
	_, _ = ParseInodeItem(b)
	_, _ = ParseFileExtent(b)
	_, _ = ParseRootItem(b)
	_, _ = ParseRootRef(b)
	_, _ = ParseExtentItem(b)
	for _, typ := range []uint8{InodeRefKey, InodeExtrefKey} {
		_, _ = ParseInodeRefs(Key{257, typ, 256}, b)
	}
	for _, typ := range []uint8{DirItemKey, DirIndexKey, XattrItemKey} {
		_, _ = ParseDirItems(Key{256, typ, 2}, b)
	}
}

func FuzzParseItems(f *testing.F) {
	f.Add(testInodeBytes())
	f.Add(testRootItemBytes(20))
	f.Add(le(uint64(2), uint16(1), "a", uint64(3), uint16(3), "bcd"))
	f.Add(dirEntry(Key{258, InodeItemKey, 0}, 9, FtRegFile, "file", ""))
	f.Add(append(fileExtentHead(5, CompressNone, ExtentInline), "hello"...))
	f.Add(append(fileExtentHead(8192, CompressNone, ExtentReg), le(uint64(1<<20), uint64(8192), uint64(4096), uint64(4096))...))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseAll(b)
		// Whatever parses must satisfy the invariants callers rely on.
		if refs, err := ParseInodeRefs(Key{257, InodeRefKey, 256}, b); err == nil {
			for _, r := range refs {
				if validName(r.Name) != nil {
					t.Fatalf("invalid name passed: %q", r.Name)
				}
			}
		}
		if e, err := ParseFileExtent(b); err == nil && e.Type != ExtentInline && e.Offset+e.NumBytes < e.Offset {
			t.Fatalf("overflowing extent passed: %+v", e)
		}
	})
}

// FuzzDecompress feeds arbitrary extents to every decompressor: no panic, and
// the output is exactly the requested size.
func FuzzDecompress(f *testing.F) {
	f.Add(uint8(CompressLZO), uint16(4096), lzoFrame(4096, lzoLiteral([]byte("hello, world"))))
	f.Add(uint8(CompressLZO), uint16(9000), lzoFrame(4096, lzoLiteral(make([]byte, 200)), lzoLiteral(make([]byte, 4096))))
	f.Add(uint8(CompressZlib), uint16(100), zlibBytes(f, make([]byte, 100)))
	f.Add(uint8(CompressZstd), uint16(100), zstdBytes(f, make([]byte, 100)))
	f.Fuzz(func(t *testing.T, alg uint8, ram uint16, src []byte) {
		out, err := decompressExtent(alg%4, src, int(ram), 4096)
		if err == nil && len(out) != int(ram) {
			t.Fatalf("decompressed %d bytes, want %d", len(out), ram)
		}
	})
}
