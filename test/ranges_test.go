package test

import (
	"bytes"
	"context"
	"errors"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"testing"

	"sendfs/btrfsread"
	"sendfs/sendgen"
)

// rangeReads is how many random ranges checkRanges reads per stream.
const rangeReads = 1000

// checkRanges opens the images through the library, as the FUSE view does,
// and checks the stream of child (from parent, "" for a full send) against
// whole, the bytes the CLI wrote: Size (counting mode, no data read) equals
// its length, and random ranges read through a Reader, plus the edges,
// equal the same slices. opts are the options whole was sent with.
func checkRanges(t *testing.T, images []string, child, parent string, whole []byte, opts sendgen.Options) {
	t.Helper()
	fs, err := btrfsread.Open(images...)
	if err != nil {
		t.Fatalf("btrfsread.Open: %v", err)
	}
	defer fs.Close()
	csv, err := fs.FindSubvolume(child)
	if err != nil {
		t.Fatalf("FindSubvolume(%q): %v", child, err)
	}
	var psv *btrfsread.Subvolume
	if parent != "" {
		if psv, err = fs.FindSubvolume(parent); err != nil {
			t.Fatalf("FindSubvolume(%q): %v", parent, err)
		}
	}
	s, err := sendgen.NewStream(csv, psv, opts)
	if err != nil {
		t.Fatalf("NewStream(%s, %q): %v", child, parent, err)
	}
	ctx := context.Background()
	size, err := s.Size(ctx)
	if err != nil {
		t.Fatalf("Size: %v", err)
	}
	if size != int64(len(whole)) {
		t.Fatalf("Size = %d, the CLI wrote %d bytes", size, len(whole))
	}
	r, err := s.NewReader(ctx)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	h := fnv.New64a()
	h.Write([]byte(child + "\x00" + parent))
	rng := rand.New(rand.NewPCG(h.Sum64(), 1))
	n := int64(len(whole))
	type rng64 struct{ off, len int64 }
	ranges := []rng64{{0, 1}, {0, n}, {n - 1, 1}, {n - 10, 100}, {n, 10}}
	for len(ranges) < rangeReads {
		off := rng.Int64N(n)
		maxLen := int64(64 << 10)
		if rng.IntN(10) == 0 {
			maxLen = 4 << 20
		}
		ranges = append(ranges, rng64{off, 1 + rng.Int64N(maxLen)})
	}
	bad := 0
	for _, rg := range ranges {
		if rg.off < 0 {
			continue
		}
		buf := make([]byte, rg.len)
		got, err := r.ReadAt(buf, rg.off)
		want := whole[rg.off:min(rg.off+rg.len, n)]
		wantEOF := rg.off+rg.len > n
		switch {
		case got != len(want) || !bytes.Equal(buf[:got], want):
			t.Errorf("ReadAt(len %d, off %d) of %d-byte stream: %d bytes, differing from the CLI's", rg.len, rg.off, n, got)
			bad++
		case wantEOF && !errors.Is(err, io.EOF):
			t.Errorf("ReadAt(len %d, off %d) past the end of %d bytes: err %v, want io.EOF", rg.len, rg.off, n, err)
			bad++
		case !wantEOF && err != nil:
			t.Errorf("ReadAt(len %d, off %d): %v", rg.len, rg.off, err)
			bad++
		}
		if bad >= 10 {
			t.Fatal("too many bad ranges")
		}
	}
}
