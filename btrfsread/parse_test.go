package btrfsread

import (
	"encoding/binary"
	"errors"
	"testing"
)

// le appends little-endian fields: uint8/16/32/64 values and byte slices.
func le(fields ...any) []byte {
	var b []byte
	for _, f := range fields {
		switch v := f.(type) {
		case uint8:
			b = append(b, v)
		case uint16:
			b = binary.LittleEndian.AppendUint16(b, v)
		case uint32:
			b = binary.LittleEndian.AppendUint32(b, v)
		case uint64:
			b = binary.LittleEndian.AppendUint64(b, v)
		case []byte:
			b = append(b, v...)
		case string:
			b = append(b, v...)
		default:
			panic("le: bad field type")
		}
	}
	return b
}

func diskKey(k Key) []byte { return le(k.ObjectID, k.Type, k.Offset) }

func testInodeBytes() []byte {
	b := le(uint64(7), uint64(8), uint64(4096), uint64(8192), uint64(0), // gen, transid, size, nbytes, block_group
		uint32(3), uint32(1000), uint32(100), uint32(0o100644), uint64(5<<20|9), uint64(0x11), // nlink uid gid mode rdev flags
		uint64(0), make([]byte, 32), // sequence, reserved
		uint64(1), uint32(2), uint64(3), uint32(4), uint64(5), uint32(6), uint64(7), uint32(8))
	if len(b) != inodeItemSize {
		panic("test inode item has the wrong size")
	}
	return b
}

func TestParseInodeItem(t *testing.T) {
	it, err := ParseInodeItem(testInodeBytes())
	if err != nil {
		t.Fatal(err)
	}
	want := InodeItem{Generation: 7, Transid: 8, Size: 4096, Nbytes: 8192, Nlink: 3, UID: 1000, GID: 100,
		Mode: 0o100644, Rdev: 5<<20 | 9, Flags: 0x11,
		Atime: Timespec{1, 2}, Ctime: Timespec{3, 4}, Mtime: Timespec{5, 6}, Otime: Timespec{7, 8}}
	if it != want {
		t.Fatalf("got %+v\nwant %+v", it, want)
	}
	if _, err := ParseInodeItem(testInodeBytes()[:159]); !isCorrupt(err) {
		t.Fatalf("short inode item: err %v, want CorruptError", err)
	}
}

func isCorrupt(err error) bool {
	var ce *CorruptError
	return errors.As(err, &ce)
}

func TestNameHash(t *testing.T) {
	if h := NameHash([]byte("default")); h != 2378154706 {
		t.Fatalf("NameHash(default) = %d, want 2378154706", h)
	}
}

func TestParseInodeRefs(t *testing.T) {
	b := le(uint64(2), uint16(1), "a", uint64(3), uint16(3), "bcd")
	refs, err := ParseInodeRefs(Key{257, InodeRefKey, 256}, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 2 || refs[0].Parent != 256 || refs[0].Index != 2 || string(refs[0].Name) != "a" ||
		refs[1].Index != 3 || string(refs[1].Name) != "bcd" {
		t.Fatalf("got %+v", refs)
	}
	for _, bad := range [][]byte{
		nil,
		le(uint64(2), uint16(0)),
		le(uint64(2), uint16(1), "/"),
		le(uint64(2), uint16(2), ".."),
		le(uint64(2), uint16(1), "."),
		le(uint64(2), uint16(3), "a\x00b"),
		le(uint64(2), uint16(4), "abc"),
		le(uint64(2), uint16(1), "a", uint64(9)),
		le(uint64(2), uint16(256), make([]byte, 256)),
	} {
		if _, err := ParseInodeRefs(Key{257, InodeRefKey, 256}, bad); !isCorrupt(err) {
			t.Errorf("ParseInodeRefs(%x): err %v, want CorruptError", bad, err)
		}
	}
}

func TestParseInodeExtrefs(t *testing.T) {
	name := []byte("link-0042")
	k := Key{300, InodeExtrefKey, ExtrefHash(256, name)}
	refs, err := ParseInodeRefs(k, le(uint64(256), uint64(44), uint16(len(name)), name))
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs[0].Parent != 256 || refs[0].Index != 44 || string(refs[0].Name) != "link-0042" {
		t.Fatalf("got %+v", refs)
	}
	k.Offset++
	if _, err := ParseInodeRefs(k, le(uint64(256), uint64(44), uint16(len(name)), name)); !isCorrupt(err) {
		t.Fatalf("extref with wrong hash: err %v", err)
	}
}

func dirEntry(loc Key, transid uint64, typ uint8, name, data string) []byte {
	return le(diskKey(loc), transid, uint16(len(data)), uint16(len(name)), typ, name, data)
}

func TestParseDirItems(t *testing.T) {
	// Two colliding names in one DIR_ITEM: the parser checks each hash, so
	// use the same name twice (as a collision would share the key).
	e := dirEntry(Key{258, InodeItemKey, 0}, 9, FtRegFile, "file", "")
	k := Key{256, DirItemKey, NameHash([]byte("file"))}
	items, err := ParseDirItems(k, append(e, e...))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[1].Location != (Key{258, InodeItemKey, 0}) || items[1].Transid != 9 ||
		items[1].Type != FtRegFile || string(items[1].Name) != "file" {
		t.Fatalf("got %+v", items)
	}
	// DIR_INDEX: key offset is the index, not a hash.
	sub := dirEntry(Key{257, RootItemKey, ^uint64(0)}, 5, FtDir, "sub", "")
	if items, err := ParseDirItems(Key{256, DirIndexKey, 2}, sub); err != nil || items[0].Location.Type != RootItemKey {
		t.Fatalf("dir index: %+v %v", items, err)
	}
	// Xattr names may hold '/', and carry data.
	x := dirEntry(Key{}, 5, FtXattr, "user.a/b", "value")
	items, err = ParseDirItems(Key{258, XattrItemKey, NameHash([]byte("user.a/b"))}, x)
	if err != nil || string(items[0].Data) != "value" {
		t.Fatalf("xattr: %+v %v", items, err)
	}
	bad := []struct {
		k Key
		b []byte
	}{
		{k, nil},
		{k, e[:len(e)-1]},
		{k, append(e, 1)},
		{Key{256, DirItemKey, 1}, e}, // hash mismatch
		{Key{256, DirIndexKey, 2}, dirEntry(Key{}, 1, FtRegFile, "a/b", "")}, // slash
		{Key{256, DirIndexKey, 2}, dirEntry(Key{}, 1, FtRegFile, "a", "x")},  // data in dir entry
		{Key{256, DirIndexKey, 2}, dirEntry(Key{}, 1, FtXattr, "a", "")},     // xattr type in dir
		{Key{256, DirIndexKey, 2}, dirEntry(Key{}, 1, 9, "a", "")},           // bad type
		{Key{258, XattrItemKey, NameHash(nil)}, dirEntry(Key{}, 1, FtXattr, "", "v")},
		{Key{258, XattrItemKey, NameHash([]byte("a\x00"))}, dirEntry(Key{}, 1, FtXattr, "a\x00", "v")},
		{Key{258, InodeItemKey, 0}, e}, // wrong key type
	}
	for i, c := range bad {
		if _, err := ParseDirItems(c.k, c.b); !isCorrupt(err) {
			t.Errorf("case %d: err %v, want CorruptError", i, err)
		}
	}
}

func fileExtentHead(ram uint64, comp, typ uint8) []byte {
	return le(uint64(11), ram, comp, uint8(0), uint16(0), typ)
}

func TestParseFileExtent(t *testing.T) {
	in, err := ParseFileExtent(append(fileExtentHead(5, CompressNone, ExtentInline), "hello"...))
	if err != nil || string(in.Inline) != "hello" || in.Len() != 5 || in.Generation != 11 {
		t.Fatalf("inline: %+v %v", in, err)
	}
	reg, err := ParseFileExtent(append(fileExtentHead(8192, CompressNone, ExtentReg), le(uint64(1<<20), uint64(8192), uint64(4096), uint64(4096))...))
	want := FileExtent{Generation: 11, RamBytes: 8192, Type: ExtentReg, DiskBytenr: 1 << 20, DiskNumBytes: 8192, Offset: 4096, NumBytes: 4096}
	if err != nil || !equalExtent(reg, want) || reg.IsHole() {
		t.Fatalf("reg: %+v %v", reg, err)
	}
	hole, err := ParseFileExtent(append(fileExtentHead(4096, CompressNone, ExtentReg), le(uint64(0), uint64(0), uint64(0), uint64(4096))...))
	if err != nil || !hole.IsHole() {
		t.Fatalf("hole: %+v %v", hole, err)
	}
	cases := map[string][]byte{
		"short head":          fileExtentHead(5, 0, 0)[:20],
		"inline len":          append(fileExtentHead(6, CompressNone, ExtentInline), "hello"...),
		"reg size":            append(fileExtentHead(8192, 0, ExtentReg), le(uint64(1), uint64(2), uint64(3))...),
		"bad type":            append(fileExtentHead(8192, 0, 3), make([]byte, 32)...),
		"beyond ram":          append(fileExtentHead(4096, 0, ExtentReg), le(uint64(1<<20), uint64(8192), uint64(4096), uint64(4096))...),
		"overflow":            append(fileExtentHead(4096, 0, ExtentReg), le(uint64(1<<20), uint64(8192), ^uint64(0), uint64(4096))...),
		"compressed prealloc": append(fileExtentHead(4096, CompressZlib, ExtentPrealloc), le(uint64(1<<20), uint64(4096), uint64(0), uint64(4096))...),
		"huge compressed":     append(fileExtentHead(1<<20, CompressZstd, ExtentReg), le(uint64(1<<20), uint64(4096), uint64(0), uint64(4096))...),
	}
	for name, b := range cases {
		if _, err := ParseFileExtent(b); !isCorrupt(err) {
			t.Errorf("%s: err %v, want CorruptError", name, err)
		}
	}
	if _, err := ParseFileExtent(append(fileExtentHead(5, 4, ExtentInline), "hello"...)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("compression 4: err %v, want ErrUnsupported", err)
	}
}

func equalExtent(a, b FileExtent) bool {
	return string(a.Inline) == string(b.Inline) && a.Generation == b.Generation && a.RamBytes == b.RamBytes &&
		a.Compression == b.Compression && a.Type == b.Type && a.DiskBytenr == b.DiskBytenr &&
		a.DiskNumBytes == b.DiskNumBytes && a.Offset == b.Offset && a.NumBytes == b.NumBytes
}

func testRootItemBytes(genV2 uint64) []byte {
	b := testInodeBytes()
	b = append(b, le(uint64(20), uint64(256), uint64(30<<20), uint64(0), uint64(16384), uint64(19), // gen dirid bytenr limit used last_snap
		uint64(RootSubvolReadOnly), uint32(1), make([]byte, 17), uint8(0), uint8(1))...) // flags refs drop_progress drop_level level
	b = append(b, le(genV2)...)
	for i := range 3 {
		u := make([]byte, 16)
		u[0] = byte(i + 1)
		b = append(b, u...)
	}
	b = append(b, le(uint64(21), uint64(22), uint64(23), uint64(24),
		uint64(100), uint32(1), uint64(200), uint32(2), uint64(300), uint32(3), uint64(400), uint32(4))...)
	return append(b, make([]byte, 64)...)
}

func TestParseRootItem(t *testing.T) {
	b := testRootItemBytes(20)
	if len(b) != rootItemV2Size {
		t.Fatalf("test root item is %d bytes", len(b))
	}
	r, err := ParseRootItem(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Generation != 20 || r.RootDirID != 256 || r.Bytenr != 30<<20 || r.Level != 1 || r.Refs != 1 ||
		r.Flags != RootSubvolReadOnly || r.UUID[0] != 1 || r.ParentUUID[0] != 2 || r.ReceivedUUID[0] != 3 ||
		r.CTransid != 21 || r.OTransid != 22 || r.STransid != 23 || r.RTransid != 24 ||
		r.CTime != (Timespec{100, 1}) || r.OTime != (Timespec{200, 2}) || r.RTime != (Timespec{400, 4}) ||
		r.Inode.Mode != 0o100644 {
		t.Fatalf("got %+v", r)
	}
	for name, b := range map[string][]byte{"generation_v2 mismatch": testRootItemBytes(19), "v1": b[:rootItemV1Size]} {
		r, err := ParseRootItem(b)
		if err != nil || !r.UUID.IsZero() || r.CTransid != 0 || r.Bytenr != 30<<20 {
			t.Errorf("%s: %+v %v", name, r, err)
		}
	}
	if _, err := ParseRootItem(b[:rootItemV1Size-1]); !isCorrupt(err) {
		t.Errorf("short root item: %v", err)
	}
}

func TestParseRootRef(t *testing.T) {
	r, err := ParseRootRef(le(uint64(256), uint64(3), uint16(4), "snap"))
	if err != nil || r.DirID != 256 || r.Sequence != 3 || string(r.Name) != "snap" {
		t.Fatalf("got %+v %v", r, err)
	}
	for _, bad := range [][]byte{le(uint64(256), uint64(3), uint16(5), "snap"), le(uint64(256), uint64(3), uint16(3), "snap"), le(uint64(256), uint64(3), uint16(2), "..")} {
		if _, err := ParseRootRef(bad); !isCorrupt(err) {
			t.Errorf("ParseRootRef(%x): %v", bad, err)
		}
	}
}

func TestParseExtentItem(t *testing.T) {
	e, err := ParseExtentItem(le(uint64(3), uint64(9), uint64(ExtentFlagData), uint8(ExtentDataRefKey)))
	if err != nil || e.Refs != 3 || e.Generation != 9 || e.Flags != ExtentFlagData {
		t.Fatalf("got %+v %v", e, err)
	}
	if _, err := ParseExtentItem(make([]byte, 23)); !isCorrupt(err) {
		t.Fatalf("short extent item: %v", err)
	}
}

// TestParseTruncations feeds every prefix of valid items to the parsers:
// each must return a value or an error, never panic.
// TestParseTruncations: every prefix of a valid item too short to hold it is
// a CorruptError from its parser (never a panic, never a partial item), and
// no other parser panics on it.
func TestParseTruncations(t *testing.T) {
	xattr := dirEntry(Key{1, 1, 0}, 1, FtXattr, "user.x", "v")
	for _, c := range []struct {
		name  string
		full  []byte
		short int // prefixes shorter than this must fail
		parse func([]byte) error
	}{
		{"inode item", testInodeBytes(), 160, func(b []byte) error { _, err := ParseInodeItem(b); return err }},
		// A root item of 239 bytes is the format before generation_v2.
		{"root item", testRootItemBytes(20), 239, func(b []byte) error { _, err := ParseRootItem(b); return err }},
		{"xattr item", xattr, len(xattr), func(b []byte) error {
			_, err := ParseDirItems(Key{256, XattrItemKey, NameHash([]byte("user.x"))}, b)
			return err
		}},
	} {
		if err := c.parse(c.full); err != nil {
			t.Fatalf("%s: the whole item: %v", c.name, err)
		}
		for n := range len(c.full) {
			parseAll(c.full[:n])
			var ce *CorruptError
			if err := c.parse(c.full[:n]); n < c.short && !errors.As(err, &ce) {
				t.Errorf("%s cut to %d of %d bytes: %v, want a CorruptError", c.name, n, len(c.full), err)
			}
		}
	}
}
