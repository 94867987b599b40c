package main

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"sendfs/btrfsread"
	"sendfs/sendgen"
)

// endCommand is an END command as every stream ends.
func endCommand() []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(sendgen.CmdEnd))
	b = binary.LittleEndian.AppendUint32(b, 0)
	crc := ^crc32.Update(^uint32(0), crc32.MakeTable(crc32.Castagnoli), b)
	binary.LittleEndian.PutUint32(b[6:], crc)
	return b
}

// TestTrimWriter: whatever the write sizes, the header is dropped and the
// END held back, and a stream that does not end with END is an error.
func TestTrimWriter(t *testing.T) {
	header := bytes.Repeat([]byte{'h'}, sendgen.HeaderLen)
	body := bytes.Repeat([]byte("command"), 100)
	stream := slices.Concat(header, body, endCommand())
	for _, step := range []int{1, 3, 9, 10, 11, 64, len(stream)} {
		for _, tc := range []struct {
			skip, hold int
			want       []byte
		}{
			{0, 0, stream},
			{sendgen.HeaderLen, 0, stream[sendgen.HeaderLen:]},
			{0, sendgen.EndLen, stream[:len(stream)-sendgen.EndLen]},
			{sendgen.HeaderLen, sendgen.EndLen, body},
		} {
			var out bytes.Buffer
			tw := &trimWriter{w: &out, skip: tc.skip, hold: tc.hold}
			for i := 0; i < len(stream); i += step {
				if n, err := tw.Write(stream[i:min(i+step, len(stream))]); err != nil || n != min(step, len(stream)-i) {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			if err := tw.finish(); err != nil {
				t.Errorf("step %d skip %d hold %d: %v", step, tc.skip, tc.hold, err)
			}
			if !bytes.Equal(out.Bytes(), tc.want) || tw.n != int64(len(tc.want)) {
				t.Errorf("step %d skip %d hold %d: wrote %d bytes (counted %d), want %d", step, tc.skip, tc.hold, out.Len(), tw.n, len(tc.want))
			}
		}
	}
	tw := &trimWriter{w: &bytes.Buffer{}, hold: sendgen.EndLen}
	tw.Write(body)
	if tw.finish() == nil {
		t.Error("a stream without END was accepted")
	}
}

func TestResolveProtocol(t *testing.T) {
	for _, tc := range []struct {
		proto           int
		set, compressed bool
		want            int // 0: a usage error
	}{
		{1, false, false, 1},
		{1, false, true, 2},
		{2, true, false, 2},
		{0, true, false, sendgen.MaxProtocol},
		{0, true, true, sendgen.MaxProtocol},
		{1, true, true, 0},
		{3, true, false, 0},
		{-1, true, false, 0},
	} {
		got, err := resolveProtocol(tc.proto, tc.set, tc.compressed)
		if got != tc.want || (tc.want == 0) != (exitCode(err) == exitUsage) {
			t.Errorf("resolveProtocol(%d, %v, %v) = %d, %v; want %d", tc.proto, tc.set, tc.compressed, got, err, tc.want)
		}
	}
}

// TestGoodParent follows btrfs-progs' find_good_parent: the origin if it is
// a clone source, else the clone source of the same origin closest in
// ctransid (the first of equals), else an error.
func TestGoodParent(t *testing.T) {
	sv := func(id, ctransid uint64, uuid, parent byte) *btrfsread.Subvolume {
		return &btrfsread.Subvolume{ID: id, Path: "s", Root: btrfsread.RootItem{UUID: btrfsread.UUID{uuid}, ParentUUID: btrfsread.UUID{parent}, CTransid: ctransid}}
	}
	vol, other := sv(256, 100, 1, 0), sv(257, 50, 2, 0)
	a, b, c, o := sv(258, 90, 3, 1), sv(259, 108, 4, 1), sv(260, 110, 5, 1), sv(261, 40, 6, 2)
	child := sv(262, 120, 7, 1)
	all := []*btrfsread.Subvolume{vol, other, a, b, c, o, child}
	for _, tc := range []struct {
		name   string
		clones []*btrfsread.Subvolume
		want   *btrfsread.Subvolume
	}{
		{"origin", []*btrfsread.Subvolume{a, vol}, vol},
		{"closest", []*btrfsread.Subvolume{o, a, b, c}, b},
		{"first of equals", []*btrfsread.Subvolume{c, sv(263, 90, 8, 1)}, c},
		{"none", []*btrfsread.Subvolume{o}, nil},
	} {
		got, err := goodParent(all, child, tc.clones)
		if got != tc.want || (tc.want == nil) != (err != nil) {
			t.Errorf("%s: got %v, %v", tc.name, got, err)
		}
	}
	if _, err := goodParent(all, vol, []*btrfsread.Subvolume{a}); err == nil {
		t.Error("a subvolume that is no snapshot got a parent")
	}
}

// TestSplitDevices: existing files after the first argument are DEVICEs,
// the last argument and everything from the first non-file on are SUBVOLs.
func TestSplitDevices(t *testing.T) {
	dir := t.TempDir()
	d1, d2 := filepath.Join(dir, "d1"), filepath.Join(dir, "d2")
	for _, d := range []string{d1, d2} {
		if err := os.WriteFile(d, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ args, devices, specs []string }{
		{[]string{d1, "s"}, []string{d1}, []string{"s"}},
		{[]string{d1, d2, "s"}, []string{d1, d2}, []string{"s"}},
		{[]string{d1, d2, "s", "t"}, []string{d1, d2}, []string{"s", "t"}},
		{[]string{d1, "s", d2}, []string{d1}, []string{"s", d2}},
		{[]string{d1, dir, "s"}, []string{d1}, []string{dir, "s"}},
		{[]string{"missing", d1}, []string{"missing"}, []string{d1}},
	} {
		devices, specs := splitDevices(tc.args)
		if !slices.Equal(devices, tc.devices) || !slices.Equal(specs, tc.specs) {
			t.Errorf("splitDevices(%q) = %q, %q", tc.args, devices, specs)
		}
	}
}
