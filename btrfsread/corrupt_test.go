package btrfsread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// profileImages makes a filesystem with the given metadata and data profile
// and 600 files in it (through the kernel when it needs several devices).
func profileImages(t *testing.T, profile string, devs int) []string {
	t.Helper()
	if devs == 1 {
		return []string{manyFilesImage(t, 600, "-m", profile)}
	}
	imgs := newTestImages(t, devs, 300, "-n", "4k", "-d", profile, "-m", profile)
	mnt := mountImages(t, imgs, "")
	writeManyFiles(t, mnt, 600)
	unmount(t, mnt)
	return imgs
}

// physicalPlaces returns where the copies of len bytes at logical live:
// one place per mirror, and for RAID5/6 the data stripe, then P, then Q.
func physicalPlaces(t *testing.T, fs *FS, logical uint64) []place {
	t.Helper()
	c := fs.chunks.find(logical)
	off := logical - c.logical
	if p := c.profile(); p == bgRAID5 || p == bgRAID6 {
		data, _ := c.locate(off, 1, 0)
		L, d, n := c.stripeLen, uint64(c.dataStripes()), uint64(len(c.stripes))
		row := off / L / d
		out := []place{data}
		for j := d; j < n; j++ {
			s := &c.stripes[(row+j)%n]
			out = append(out, place{s, s.offset + row*L + off%L})
		}
		return out
	}
	var out []place
	for m := range c.copies() {
		pl, _ := c.locate(off, 1, m)
		out = append(out, pl)
	}
	return out
}

func corruptAt(t *testing.T, pl place, at uint64) {
	t.Helper()
	f, err := os.OpenFile(pl.s.dev.Name, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, int64(pl.physical+at))
	must(t, err)
	b[0] ^= 0x5a
	_, err = f.WriteAt(b, int64(pl.physical+at))
	must(t, err)
}

// leafToCorrupt returns the fs tree's keys as text, the leaf that holds
// object 1000 and the places of its copies.
func leafToCorrupt(t *testing.T, imgs []string) (keys string, leaf uint64, places []place) {
	t.Helper()
	fs, err := Open(imgs...)
	must(t, err)
	defer fs.Close()
	tr := fsTreeForTest(t, fs, FSTreeID)
	keys = fmt.Sprint(allKeys(t, tr))
	p, err := tr.descend(Key{ObjectID: 1000}, false, new([maxTreeLevel]pathLevel))
	must(t, err)
	leaf = p[len(p)-1].n.logical
	return keys, leaf, physicalPlaces(t, fs, leaf)
}

// TestCorruptMetadata corrupts one copy of a leaf of the fs tree (the tree
// must still read the same), then every copy (the error must name it).
func TestCorruptMetadata(t *testing.T) {
	for _, c := range []struct {
		profile string
		devs    int
	}{{"dup", 1}, {"raid1", 2}, {"raid10", 4}, {"raid5", 3}, {"raid6", 4}} {
		t.Run(c.profile, func(t *testing.T) {
			imgs := profileImages(t, c.profile, c.devs)
			want, leaf, places := leafToCorrupt(t, imgs)
			corruptAt(t, places[0], 2000)
			fs, err := Open(imgs...)
			must(t, err)
			defer fs.Close()
			if got := fmt.Sprint(allKeys(t, fsTreeForTest(t, fs, FSTreeID))); got != want {
				t.Fatal("fs tree reads differently with one bad copy")
			}

			// At different offsets: RAID6 rebuilds that use both P and Q
			// cancel out one error made the same in both.
			for i, pl := range places[1:] {
				corruptAt(t, pl, 3000+uint64(i)*100)
			}
			fs, err = Open(imgs...)
			must(t, err)
			defer fs.Close()
			err = fsTreeForTest(t, fs, FSTreeID).Walk(Key{}, MaxKey, func(Item) error { return nil })
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Logical != leaf || !strings.Contains(err.Error(), "checksum mismatch") {
				t.Fatalf("walk with every copy bad: %v, want a CorruptError at logical 0x%x", err, leaf)
			}
			// With no newer commit on disk, a refresh changes nothing.
			retried := fs.Retry(func(v *FS) error {
				return fsTreeForTest(t, v, FSTreeID).Walk(Key{}, MaxKey, func(Item) error { return nil })
			})
			if !errors.As(retried, &ce) || ce.Logical != leaf {
				t.Fatalf("walk retried after a refresh: %v, want the same CorruptError", retried)
			}
			t.Log(err)
		})
	}
}

// TestReadLogicalData reads a file's extents with readLogical from every
// copy and compares them with what was written through the kernel: data
// stripes of every profile, reads split at stripe boundaries, and every
// RAID5/6 rebuild (from P, from Q, from P and Q) against the kernel's own
// parity, up to four data stripes.
func TestReadLogicalData(t *testing.T) {
	for _, c := range []struct {
		profile string
		devs    int
	}{{"single", 1}, {"dup", 1}, {"raid0", 3}, {"raid1", 2}, {"raid10", 4}, {"raid1c3", 3}, {"raid1c4", 4}, {"raid5", 3}, {"raid6", 4}, {"raid5", 5}, {"raid6", 6}} {
		t.Run(fmt.Sprintf("%s-%d", c.profile, c.devs), func(t *testing.T) {
			imgs := newTestImages(t, c.devs, 300, "-d", c.profile, "-m", c.profile)
			data := writeRandomFile(t, imgs, 3<<20+12345, uint64(c.devs), 7)

			fs, err := Open(imgs...)
			must(t, err)
			defer fs.Close()
			covered := 0
			err = fsTreeForTest(t, fs, FSTreeID).Walk(Key{257, ExtentDataKey, 0}, Key{257, ExtentDataKey, ^uint64(0)}, func(it Item) error {
				le := binary.LittleEndian
				if it.Data[20] != ExtentReg || it.Data[16] != CompressNone {
					return fmt.Errorf("extent %v: type %d compression %d", it.Key, it.Data[20], it.Data[16])
				}
				bytenr, off, n := le.Uint64(it.Data[21:]), le.Uint64(it.Data[37:]), le.Uint64(it.Data[45:])
				want := data[it.Key.Offset:min(it.Key.Offset+n, uint64(len(data)))]
				copies, err := fs.copies(bytenr)
				must(t, err)
				for m := range copies {
					got := make([]byte, len(want))
					must(t, fs.readLogical(got, bytenr+off, m, false))
					if !bytes.Equal(got, want) {
						t.Errorf("extent at file offset %d, copy %d of %d: wrong bytes", it.Key.Offset, m, copies)
					}
				}
				covered += len(want)
				return nil
			})
			must(t, err)
			if covered != len(data) {
				t.Errorf("extents cover %d of %d bytes", covered, len(data))
			}
		})
	}
}

// TestItemErrorNamesLeaf corrupts an item the leaf checker does not parse
// (a data extent item's inline backref type) in every copy of a real leaf,
// with the checksum recomputed: the parse error at its use must name that
// leaf's logical address.
func TestItemErrorNamesLeaf(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(dir+"/data", bytes.Repeat([]byte("not inline, not compressed\n"), 4096), 0o644))
	img := newTestImage(t, 300, "--rootdir", dir)
	fs, err := Open(img)
	must(t, err)
	sv, err := fs.Subvolume(FSTreeID)
	must(t, err)
	ino, err := sv.Lookup("data")
	must(t, err)
	var bytenr uint64
	must(t, sv.Extents(ino, 0, func(_ uint64, e *FileExtent) error { bytenr = e.DiskBytenr; return nil }))
	ext, err := fs.Tree(ExtentTreeID)
	must(t, err)
	// The key offset is the extent's length: the last key of the bytenr.
	it, err := ext.SearchBefore(Key{bytenr, ExtentItemKey, ^uint64(0)})
	must(t, err)
	// refs, generation, flags (24 bytes), then the first inline ref's type.
	const inlineTypeAt = 24
	if it.Key.ObjectID != bytenr || len(it.Data) <= inlineTypeAt || it.Data[inlineTypeAt] != ExtentDataRefKey {
		t.Fatalf("extent item of 0x%x: %v % x", bytenr, it.Key, it.Data)
	}
	leaf, item := it.Leaf, append([]byte(nil), it.Data...)
	places, rules := physicalPlaces(t, fs, leaf), fs.nodeRules()
	fs.Close()

	for _, pl := range places {
		f, err := os.OpenFile(pl.s.dev.Name, os.O_RDWR, 0)
		must(t, err)
		b := make([]byte, rules.nodeSize)
		_, err = f.ReadAt(b, int64(pl.physical))
		must(t, err)
		at := bytes.Index(b, item)
		if at < 0 || bytes.Contains(b[at+1:], item) {
			t.Fatalf("the extent item is not once in the leaf at 0x%x", leaf)
		}
		b[at+inlineTypeAt] = 0xee
		copy(b, rules.csum.sum(new([32]byte), b[superCsumEnd:]))
		_, err = f.WriteAt(b, int64(pl.physical))
		must(t, err)
		must(t, f.Close())
	}

	fs, err = Open(img)
	must(t, err)
	defer fs.Close()
	_, _, err = fs.DataBackrefs(bytenr)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Logical != leaf || !strings.Contains(err.Error(), fmt.Sprintf("unknown inline backref type in data extent item (238) at logical 0x%x", leaf)) {
		t.Fatalf("DataBackrefs of the corrupted item: %v, want a CorruptError at logical 0x%x", err, leaf)
	}
	t.Log(err)
}
