package sendgen

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestRawCRC32C(t *testing.T) {
	// FORMAT.md §1.1 / ECOSYSTEM.md §4: seed 0, no final inversion.
	if got := rawCRC32C([]byte("123456789")); got != 0x58e3fa20 {
		t.Fatalf("raw crc32c = %#x, want 0x58e3fa20", got)
	}
}

func TestStreamHeader(t *testing.T) {
	got := appendStreamHeader(nil, 1)
	want := []byte("btrfs-stream\x00\x01\x00\x00\x00")
	if !bytes.Equal(got, want) || len(got) != streamHeaderLen {
		t.Fatalf("header = %q, want %q", got, want)
	}
}

func TestEncodeCommandLayout(t *testing.T) {
	c := &Command{Cmd: CmdWrite}
	c.Bytes(AttrPath, []byte("f"))
	c.U64(AttrFileOffset, 4096)
	c.Data = &DataRef{Len: 3}
	for _, tc := range []struct {
		proto   int
		dataHdr []byte
	}{
		{1, []byte{19, 0, 3, 0}},
		{2, []byte{19, 0}}, // v2: DATA has no length and runs to the end
	} {
		e := encoder{proto: tc.proto}
		got := e.appendCommand([]byte("xx"), c, []byte("abc"))[2:]
		var want []byte
		want = binary.LittleEndian.AppendUint32(want, uint32(len(c.Attrs)+len(tc.dataHdr)+3))
		want = binary.LittleEndian.AppendUint16(want, uint16(CmdWrite))
		want = append(want, 0, 0, 0, 0)
		want = append(want, 15, 0, 1, 0, 'f', 18, 0, 8, 0, 0, 0x10, 0, 0, 0, 0, 0, 0)
		want = append(want, tc.dataHdr...)
		want = append(want, "abc"...)
		binary.LittleEndian.PutUint32(want[crcOffset:], rawCRC32C(want))
		if !bytes.Equal(got, want) {
			t.Errorf("proto %d:\n got %x\nwant %x", tc.proto, got, want)
		}
		if n := e.commandLen(c); n != int64(len(want)) {
			t.Errorf("proto %d: commandLen = %d, encoded %d", tc.proto, n, len(want))
		}
	}
}

func TestEncodeCheck(t *testing.T) {
	big := &Command{Cmd: CmdWrite, Data: &DataRef{Len: 65536}}
	if err := (encoder{proto: 1}).check(big); err == nil {
		t.Error("protocol 1 accepted 64 KiB of data in one TLV")
	}
	if err := (encoder{proto: 2}).check(big); err != nil {
		t.Errorf("protocol 2 rejected 64 KiB of data: %v", err)
	}
}

// TestCountMatchesEncoding: for every command of the sample streams the
// counted length is the encoded length.
func TestCountMatchesEncoding(t *testing.T) {
	for _, proto := range []int{1, 2} {
		e := encoder{proto: proto}
		cmds := sampleCommands(49152)
		for i := range cmds {
			var data []byte
			if cmds[i].Data != nil {
				data = make([]byte, cmds[i].Data.Len)
			}
			if got, want := e.commandLen(&cmds[i]), len(e.appendCommand(nil, &cmds[i], data)); got != int64(want) {
				t.Fatalf("proto %d, command %d (%d): commandLen %d, encoded %d", proto, i, cmds[i].Cmd, got, want)
			}
		}
	}
}
