package sendgen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"sendfs/btrfsread"
)

// rangeCase is one real stream of the engine image: its bytes as WriteTo
// writes them and a Reader over it.
type rangeCase struct {
	name   string
	want   []byte
	reader *Reader
}

// FuzzEngineRanges is FuzzRanges on the real engine's output: random byte
// ranges of the streams of testdata/engine.img.gz (s1 and s2 full, and
// incremental both ways, in protocol 1 and with --compressed-data) read
// through a Reader must equal the same slices of what WriteTo writes, with
// io.EOF exactly when a read runs past the end.
func FuzzEngineRanges(f *testing.F) {
	cases := engineRangeCases(f)
	f.Add(uint8(0), uint32(0), uint32(1<<20))
	f.Add(uint8(3), uint32(17), uint32(10))
	f.Add(uint8(6), uint32(70000), uint32(200000))
	f.Fuzz(func(t *testing.T, which uint8, off, n uint32) {
		c := cases[int(which)%len(cases)]
		size := int64(len(c.want))
		start := int64(off) % (size + 16)
		buf := make([]byte, min(n, 4<<20))
		got, err := c.reader.ReadAt(buf, start)
		want := []byte{}
		if start < size {
			want = c.want[start:min(start+int64(len(buf)), size)]
		}
		if got != len(want) || !bytes.Equal(buf[:got], want) {
			t.Fatalf("%s: ReadAt(%d bytes at %d) of %d = %d bytes, %v; differs from WriteTo", c.name, len(buf), start, size, got, err)
		}
		if (err != nil) != (start+int64(len(buf)) > size) || (err != nil && !errors.Is(err, io.EOF)) {
			t.Fatalf("%s: ReadAt(%d bytes at %d) of %d: error %v", c.name, len(buf), start, size, err)
		}
	})
}

func engineRangeCases(f *testing.F) []rangeCase {
	img := loadEngineImage(f)
	fsys, err := btrfsread.New([]btrfsread.Device{{Name: "engine.img", R: bytes.NewReader(img.base), Size: int64(len(img.base))}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { fsys.Close() })
	s1, err1 := fsys.FindSubvolume("s1")
	s2, err2 := fsys.FindSubvolume("s2")
	if err := errors.Join(err1, err2); err != nil {
		f.Fatal(err)
	}
	var cases []rangeCase
	for _, opts := range []Options{{}, {Protocol: 2, CompressedData: true}} {
		for _, pair := range []struct {
			name          string
			child, parent *btrfsread.Subvolume
		}{{"s1", s1, nil}, {"s2", s2, nil}, {"s1→s2", s2, s1}, {"s2→s1", s1, s2}} {
			name := pair.name + " " + opts.String()
			s, err := NewStream(pair.child, pair.parent, opts)
			if err != nil {
				f.Fatalf("%s: %v", name, err)
			}
			var want bytes.Buffer
			if _, err := s.WriteTo(context.Background(), &want, nil); err != nil {
				f.Fatalf("%s: %v", name, err)
			}
			r, err := s.NewReader(context.Background())
			if err != nil {
				f.Fatalf("%s: %v", name, err)
			}
			cases = append(cases, rangeCase{name, want.Bytes(), r})
		}
	}
	return cases
}
