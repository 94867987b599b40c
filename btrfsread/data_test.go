package btrfsread

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReadMatchesKernel fills real filesystems (each compression, with and
// without no-holes) with every kind of file, subvolumes and snapshots,
// records what the mounted kernel shows, unmounts, and requires btrfsread to
// show the same: subvolume list, names, inode numbers, sizes, modes, owners,
// times, link counts, rdev, xattrs, link targets and content.
func TestReadMatchesKernel(t *testing.T) {
	requireTools(t, true, "mkfs.btrfs", "btrfs", "cp")
	variants := []struct {
		name, mount string
		mkfs        []string
		bigDir      bool
		compressed  bool // expect compressed extents
		holes       bool // expect explicit hole items
	}{
		{"default", "", nil, true, false, false},
		{"no-holes-off", "", []string{"-O", "^no-holes"}, false, false, true},
		{"zlib", "compress=zlib", nil, false, true, false},
		{"lzo", "compress=lzo", nil, false, true, false},
		{"zstd", "compress=zstd", nil, false, true, false},
		{"force-zstd", "compress-force=zstd", nil, true, true, false},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			start := time.Now()
			img := newTestImage(t, 300, v.mkfs...)
			mnt := mountImage(t, img, joinOpts("noatime", v.mount))
			populateFiles(t, mnt, v.bigDir)
			makeSubvolumes(t, mnt)
			run(t, "btrfs", "filesystem", "sync", mnt) // so that root generations are final
			listed := btrfsSubvolumeList(t, mnt)
			want := map[string]treeFacts{"": mountedFacts(t, mnt)}
			for _, s := range listed {
				want[s.Path] = mountedFacts(t, filepath.Join(mnt, s.Path))
			}
			unmount(t, mnt)

			fs, err := Open(img)
			noErr(t, err)
			defer fs.Close()
			svs := compareSubvolumes(t, fs, listed)
			kinds := countItemKinds(t, svs[0])
			t.Logf("top level: %+v", kinds)
			if kinds.Inline == 0 || kinds.Reg == 0 || kinds.Prealloc == 0 || kinds.Extrefs == 0 ||
				(kinds.RegCompressed > 0) != v.compressed || (kinds.InlineCompressed > 0) != v.compressed ||
				(kinds.Hole > 0) != v.holes {
				t.Errorf("the image does not hold the extents this variant must check")
			}
			for _, sv := range svs {
				compareFacts(t, "subvolume "+sv.Path, want[sv.Path], readerFacts(t, sv))
			}
			checkLookupPaths(t, svs[0])
			checkExtentRefs(t, svs[0])
			checkConcurrentReads(t, svs[0])
			t.Logf("%s: %v", v.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

func joinOpts(opts ...string) string {
	var s []string
	for _, o := range opts {
		if o != "" {
			s = append(s, o)
		}
	}
	return strings.Join(s, ",")
}

// checkLookupPaths resolves paths through Lookup and compares with the
// inode found by walking.
func checkLookupPaths(t *testing.T, sv *Subvolume) {
	t.Helper()
	dir, err := sv.Lookup("links")
	noErr(t, err)
	ino, err := sv.Lookup("/links/./target")
	noErr(t, err)
	d, err := sv.LookupName(dir, []byte("target"))
	if err != nil || d.Location.ObjectID != ino {
		t.Fatalf("Lookup(links/target) = %d, LookupName = %v %v", ino, d, err)
	}
	for _, bad := range []string{"links/nope", "text-1m/x", "sub/in-sub", "../x"} {
		if _, err := sv.Lookup(bad); err == nil {
			t.Errorf("Lookup(%q) succeeded", bad)
		}
	}
	if root, err := sv.Lookup(""); err != nil || root != FirstFreeObjectID {
		t.Errorf("Lookup(\"\") = %d, %v", root, err)
	}
}

// checkConcurrentReads reads the same files from several goroutines at
// scattered offsets and compares with one sequential read.
func checkConcurrentReads(t *testing.T, sv *Subvolume) {
	t.Helper()
	for _, name := range []string{"text-1m", "mixed", "partial-clone", "sparse"} {
		ino, err := sv.Lookup(name)
		noErr(t, err)
		it, err := sv.Inode(ino)
		noErr(t, err)
		whole := readAllAt(t, sv, ino, it.Size)
		var wg sync.WaitGroup
		errs := make(chan string, 64)
		for w := range 4 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 7))
				for range 50 {
					off := r.Uint64N(it.Size)
					n := min(r.Uint64N(200000)+1, it.Size-off)
					buf := make([]byte, n)
					if _, err := sv.ReadAt(ino, buf, int64(off)); err != nil && off+n < it.Size {
						errs <- err.Error()
						return
					}
					if !bytes.Equal(buf, whole[off:off+n]) {
						errs <- name + ": concurrent read differs"
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	}
}

// checkExtentRefs: a reflinked extent has at least two references, and an
// address that starts no extent has none.
func checkExtentRefs(t *testing.T, sv *Subvolume) {
	t.Helper()
	ino, err := sv.Lookup("reflink-copy")
	noErr(t, err)
	var first *FileExtent
	noErr(t, sv.Extents(ino, 0, func(_ uint64, e *FileExtent) error {
		first = e
		return ErrStopWalk
	}))
	refs, err := sv.FS().ExtentRefs(first.DiskBytenr)
	if err != nil || refs < 2 {
		t.Errorf("ExtentRefs of a reflinked extent = %d, %v", refs, err)
	}
	if _, err := sv.FS().ExtentRefs(first.DiskBytenr + 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("ExtentRefs inside an extent: %v, want ErrNotFound", err)
	}
}

// BenchmarkReadAt reads a 256 MiB file through ReadAt in 1 MiB pieces, from
// a plain and a zstd-compressed image (the node and extent caches are warm
// after the first pass; the image file is in the page cache).
func BenchmarkReadAt(b *testing.B) {
	requireTools(b, true, "mkfs.btrfs")
	for _, mount := range []string{"", "compress-force=zstd"} {
		b.Run("mount="+mount, func(b *testing.B) {
			img := newTestImage(b, 700)
			mnt := mountImage(b, img, mount)
			r := highRand()
			f, err := os.Create(filepath.Join(mnt, "big"))
			noErr(b, err)
			for range 256 {
				_, err := f.Write(append(textBytes(512<<10, 1), randomBytes(r, 512<<10)...))
				noErr(b, err)
			}
			noErr(b, f.Close())
			unmount(b, mnt)
			fs, err := Open(img)
			noErr(b, err)
			defer fs.Close()
			sv, err := fs.Subvolume(FSTreeID)
			noErr(b, err)
			ino, err := sv.Lookup("big")
			noErr(b, err)
			buf := make([]byte, 1<<20)
			b.SetBytes(256 << 20)
			b.ResetTimer()
			for range b.N {
				for off := int64(0); off < 256<<20; off += 1 << 20 {
					if _, err := sv.ReadAt(ino, buf, off); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
