package sendgen

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"sendfs/btrfsread"
)

// TestExtentFilter: every address added is reported as maybe present, and
// few others are, at the size of a 100,000-file send.
func TestExtentFilter(t *testing.T) {
	f := newExtentFilter()
	r := rand.New(rand.NewPCG(1, 2))
	added := map[uint64]bool{}
	for range 100000 {
		bytenr := r.Uint64N(1<<40) &^ 4095
		added[bytenr] = true
		if err := f.addItem(fileExtentItem(bytenr)); err != nil {
			t.Fatal(err)
		}
	}
	for bytenr := range added {
		if !f.mayHave(bytenr) {
			t.Fatalf("0x%x was added but is reported absent", bytenr)
		}
	}
	var maybe int
	for range 100000 {
		if bytenr := r.Uint64N(1<<40) &^ 4095; !added[bytenr] && f.mayHave(bytenr) {
			maybe++
		}
	}
	if maybe > 1000 {
		t.Errorf("%d of 100000 addresses never added are reported maybe present", maybe)
	}
	// Inline extents, holes and other items add nothing.
	g := newExtentFilter()
	for _, it := range []btrfsread.Item{fileExtentItem(0), {Key: btrfsread.Key{ObjectID: 257, Type: btrfsread.InodeItemKey}}} {
		if err := g.addItem(it); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range g {
		if w != 0 {
			t.Fatal("a hole or an inode item was added")
		}
	}
}

// fileExtentItem is a regular file extent item of 4 KiB at bytenr (a hole
// at 0).
func fileExtentItem(bytenr uint64) btrfsread.Item {
	b := make([]byte, 53)
	binary.LittleEndian.PutUint64(b[8:], 4096) // ram bytes
	b[20] = btrfsread.ExtentReg
	binary.LittleEndian.PutUint64(b[21:], bytenr)
	binary.LittleEndian.PutUint64(b[29:], 4096) // disk bytes
	binary.LittleEndian.PutUint64(b[45:], 4096) // num bytes
	return btrfsread.Item{Key: btrfsread.Key{ObjectID: 257, Type: btrfsread.ExtentDataKey}, Data: b}
}
