package btrfsread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// lzoLiteral encodes data as one LZO1X stream of a single literal run plus
// the end marker: enough to build btrfs LZO frames without a compressor.
func lzoLiteral(data []byte) []byte {
	n := len(data)
	var b []byte
	switch {
	case n <= 238:
		b = []byte{byte(17 + n)}
	case n-3 <= 15:
		b = []byte{byte(n - 3)}
	default:
		rem := n - 18
		b = []byte{0}
		for ; rem > 255; rem -= 255 {
			b = append(b, 0)
		}
		b = append(b, byte(rem))
	}
	b = append(b, data...)
	return append(b, 0x11, 0, 0)
}

// lzoFrame wraps LZO segments in btrfs framing, padding so that no segment
// header straddles a sector.
func lzoFrame(sectorSize int, segs ...[]byte) []byte {
	b := make([]byte, 4)
	for _, s := range segs {
		if rest := sectorSize - len(b)%sectorSize; rest < 4 {
			b = append(b, make([]byte, rest)...)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	return b
}

func zlibBytes(t testing.TB, data []byte) []byte {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zstdBytes compresses data into one frame padded to a sector, as btrfs
// stores it.
func zstdBytes(t testing.TB, data []byte) []byte {
	e, err := zstd.NewWriter(nil, zstd.WithWindowSize(128<<10))
	if err != nil {
		t.Fatal(err)
	}
	b := e.EncodeAll(data, nil)
	return append(b, make([]byte, 4096-len(b)%4096)...)
}

func testPattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/300)
	}
	return b
}

func TestDecompressRoundTrips(t *testing.T) {
	data := testPattern(100 << 10)
	for name, c := range map[string]struct {
		alg uint8
		src []byte
	}{
		"zlib": {CompressZlib, zlibBytes(t, data)},
		"zstd": {CompressZstd, zstdBytes(t, data)},
	} {
		for range 2 { // twice: the second run uses a pooled decoder
			got, err := decompressExtent(c.alg, c.src, len(data), 4096)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s: err %v, equal %v", name, err, bytes.Equal(got, data))
			}
		}
	}
}

func TestDecompressLZO(t *testing.T) {
	// The first segment ends 2 bytes before a sector boundary, so the
	// second header starts on the next sector.
	a, b := testPattern(4066), testPattern(4096)
	frame := lzoFrame(4096, lzoLiteral(a), lzoLiteral(b))
	if len(lzoLiteral(a))+8 != 4094 {
		t.Fatalf("test setup: first segment ends at %d", len(lzoLiteral(a))+8)
	}
	got, err := decompressExtent(CompressLZO, frame, len(a)+len(b), 4096)
	if err != nil || !bytes.Equal(got, append(a, b...)) {
		t.Fatalf("err %v", err)
	}
	// Inline extents: one segment.
	got, err = decompressExtent(CompressLZO, lzoFrame(4096, lzoLiteral([]byte("hello"))), 5, 4096)
	if err != nil || string(got) != "hello" {
		t.Fatalf("inline: %q %v", got, err)
	}
}

func TestDecompressCorrupt(t *testing.T) {
	good := lzoFrame(4096, lzoLiteral(testPattern(100)))
	cases := map[string]struct {
		alg uint8
		src []byte
		ram int
	}{
		"lzo total too big":  {CompressLZO, append(binary.LittleEndian.AppendUint32(nil, 9999), good[4:]...), 100},
		"lzo segment beyond": {CompressLZO, good[:50], 100},
		"lzo garbage":        {CompressLZO, lzoFrame(4096, []byte{0xff, 0xff, 0xff, 0xff}), 100},
		"zlib garbage":       {CompressZlib, []byte{1, 2, 3, 4}, 100},
		"zstd garbage":       {CompressZstd, []byte{0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff}, 100},
		"zstd no magic":      {CompressZstd, make([]byte, 4096), 100},
		"too large":          {CompressZlib, zlibBytes(t, testPattern(50)), 200 << 10},
	}
	for name, c := range cases {
		if _, err := decompressExtent(c.alg, c.src, c.ram, 4096); !isCorrupt(err) {
			t.Errorf("%s: err %v, want CorruptError", name, err)
		}
	}
	if _, err := decompressExtent(7, nil, 1, 4096); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unknown compression: %v", err)
	}
	// Short streams are zero-filled, as the kernel does.
	for name, src := range map[uint8][]byte{
		CompressZstd: zstdBytes(t, []byte("abc")),
		CompressZlib: zlibBytes(t, []byte("abc")),
		CompressLZO:  lzoFrame(4096, lzoLiteral([]byte("abc"))),
	} {
		got, err := decompressExtent(name, src, 6, 4096)
		if err != nil || string(got) != "abc\x00\x00\x00" {
			t.Errorf("short stream of type %d: %q %v", name, got, err)
		}
	}
}
