package btrfsread

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
)

// TestBlockDeviceReads reads a file sequentially through a loop block device
// (windows and read-ahead batches) and random ranges of the device (across
// windows, up to its end), and compares both with the image file.
func TestBlockDeviceReads(t *testing.T) {
	img := newTestImage(t, 300, "-m", "dup")
	data := writeRandomFile(t, []string{img}, 20<<20+12345, 1, 2)
	fs, err := Open(attachLoop(t, img))
	must(t, err)
	defer fs.Close()
	bd := fs.members[0].R.(*blockDevice)

	sv, err := fs.Subvolume(FSTreeID)
	must(t, err)
	got := make([]byte, len(data))
	for off := 0; off < len(data); off += 48 << 10 {
		_, err := sv.ReadAt(257, got[off:min(off+48<<10, len(data))], int64(off))
		must(t, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("a file read through the block device differs from what was written")
	}
	if bd.readAheads.Load() == 0 {
		t.Error("reading 20 MiB sequentially started no read-ahead")
	}

	f, err := os.Open(img)
	must(t, err)
	defer f.Close()
	size := fs.members[0].Size
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 300 {
		off, n := rng.Int64N(size), 1+rng.IntN(3*windowSize)
		if i%10 == 0 {
			off = size - int64(n)/2 // across the end of the device
		}
		want, got := make([]byte, n), make([]byte, n)
		wn, werr := f.ReadAt(want, off)
		gn, gerr := bd.ReadAt(got, off)
		if gn != wn || !bytes.Equal(got[:gn], want[:wn]) || (gerr == nil) != (werr == nil) {
			t.Fatalf("%d bytes at %d: block device read %d (%v), image file %d (%v), same bytes: %v",
				n, off, gn, gerr, wn, werr, bytes.Equal(got[:gn], want[:wn]))
		}
	}
}

// TestBlockDeviceWindowReuse reads random ranges of a device several times
// the window cache from 4 goroutines at once, so that windows are dropped
// and their buffers used again while others read: every read must still
// give the image file's bytes.
func TestBlockDeviceWindowReuse(t *testing.T) {
	img := newTestImage(t, 300)
	writeRandomFile(t, []string{img}, 100<<20, 1, 2)
	fs, err := Open(attachLoop(t, img))
	must(t, err)
	defer fs.Close()
	bd := fs.members[0].R.(*blockDevice)
	f, err := os.Open(img)
	must(t, err)
	defer f.Close()
	size := fs.members[0].Size
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(g), 5))
			for range 300 {
				// Runs of sequential reads start read-ahead batches.
				off, n := rng.Int64N(size-4*windowSize), 1+rng.IntN(3*windowSize)
				for range 1 + rng.IntN(8) {
					want, got := make([]byte, n), make([]byte, n)
					wn, _ := f.ReadAt(want, off)
					gn, _ := bd.ReadAt(got, off)
					if gn != wn || !bytes.Equal(got, want) {
						errs <- fmt.Errorf("%d bytes at %d: the block device read %d bytes, the image file %d, same: %v", n, off, gn, wn, bytes.Equal(got, want))
						return
					}
					off += int64(n)
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		must(t, <-errs)
	}
}

// TestBlockDeviceCorruptInBatch corrupts the first copy of a leaf that a
// read-ahead batch reads: the walk must still read the tree as it is
// (from the second copy); with both copies bad it must name the leaf.
func TestBlockDeviceCorruptInBatch(t *testing.T) {
	img := manyFilesImage(t, 600, "-m", "dup")
	want, leaf, places := leafToCorrupt(t, []string{img})
	corruptAt(t, places[0], 2000)

	loop := attachLoop(t, img)
	open := func() (*FS, *blockDevice) {
		fs, err := Open(loop)
		must(t, err)
		t.Cleanup(func() { fs.Close() })
		return fs, fs.members[0].R.(*blockDevice)
	}
	fs, bd := open()
	// Reading the windows before the leaf's, in order, reads the leaf's
	// window ahead.
	k := int64(places[0].physical) / windowSize
	for w := k - sequentialWindows - 1; w < k; w++ {
		_, err := bd.ReadAt(make([]byte, 1), w*windowSize)
		must(t, err)
	}
	bd.mu.Lock()
	wait := bd.pending[k]
	bd.mu.Unlock()
	if wait != nil {
		<-wait
	}
	if !bd.windows.Load().Contains(k) {
		t.Fatal("the leaf's window was not read ahead")
	}
	if got := fmt.Sprint(allKeys(t, fsTreeForTest(t, fs, FSTreeID))); got != want {
		t.Fatal("fs tree reads differently through the block device with one bad copy")
	}

	corruptAt(t, places[1], 3000)
	fs, _ = open()
	err := fsTreeForTest(t, fs, FSTreeID).Walk(Key{}, MaxKey, func(Item) error { return nil })
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Logical != leaf {
		t.Fatalf("walk with both copies bad: %v, want a CorruptError at logical 0x%x", err, leaf)
	}
}

// TestBlockDeviceStaleWindow changes the device under a cached window: the
// window keeps what was read (as the kernel's page cache would) until it
// is dropped, and readFresh always reads what is there now.
func TestBlockDeviceStaleWindow(t *testing.T) {
	img := newTestImage(t, 300)
	_, dev, err := openDevice(attachLoop(t, img))
	must(t, err)
	bd := dev.R.(*blockDevice)
	defer bd.Close()
	const off = 100<<20 + 123
	read := func(how func([]byte, int64) (int, error)) string {
		b := make([]byte, 5)
		_, err := how(b, off)
		must(t, err)
		return string(b)
	}
	old := read(bd.ReadAt)
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("fresh"), off)
	must(t, err)
	must(t, f.Close())
	fresh := func(p []byte, off int64) (int, error) { return readFresh(dev, p, off) }
	if got := read(bd.ReadAt); got != old {
		t.Errorf("cached window read %q, want the %q it held", got, old)
	}
	if got := read(fresh); got != "fresh" {
		t.Errorf("readFresh read %q, want %q", got, "fresh")
	}
	bd.dropCache()
	if got := read(bd.ReadAt); got != "fresh" {
		t.Errorf("after dropCache the window read %q, want %q", got, "fresh")
	}
	if _, err := bd.ReadAt(make([]byte, 10), dev.Size-5); !errors.Is(err, io.EOF) {
		t.Errorf("read across the end of the device: %v, want io.EOF", err)
	}
}

// TestReadAheadLeaves: the leaves under a level-1 node are read ahead from
// a block device, each into a window, in batches of adjacent windows.
func TestReadAheadLeaves(t *testing.T) {
	img := manyFilesImage(t, 600)
	fs, err := Open(attachLoop(t, img))
	must(t, err)
	defer fs.Close()
	bd := fs.members[0].R.(*blockDevice)
	p, err := fsTreeForTest(t, fs, FSTreeID).descend(Key{}, false, new([maxTreeLevel]pathLevel))
	must(t, err)
	parent := p[len(p)-2].n
	bd.dropCache() // opening read this small filesystem's metadata ahead
	before := bd.readAheads.Load()
	fs.readAheadLeaves(parent, 0, MaxKey)
	batches := bd.readAheads.Load() - before
	var leaves []int64
	for i := range parent.nritems {
		bytenr, _ := parent.ptr(i)
		pl := physicalPlaces(t, fs, bytenr)[0]
		k := int64(pl.physical) / windowSize
		bd.mu.Lock()
		wait := bd.pending[k]
		bd.mu.Unlock()
		if wait != nil {
			<-wait
		}
		if !bd.windows.Load().Contains(k) && !fs.blocks.Contains(bytenr) {
			t.Errorf("leaf %d of %d (logical 0x%x) was not read ahead", i, parent.nritems, bytenr)
		}
		leaves = append(leaves, k)
	}
	if batches == 0 || batches >= int64(parent.nritems) {
		t.Errorf("%d leaves read ahead in %d batches", parent.nritems, batches)
	}
	slices.Sort(leaves)
	t.Logf("%d leaves in %d windows, read ahead in %d batches", parent.nritems, len(slices.Compact(leaves)), batches)
}
