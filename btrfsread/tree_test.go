package btrfsread

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fsTreeForTest finds a tree through its ROOT_ITEM without the high-level
// parsers: bytenr@176, generation@160, level@238.
func fsTreeForTest(t testing.TB, fs *FS, id uint64) Tree {
	t.Helper()
	it, err := fs.RootTree().SearchBefore(Key{id, RootItemKey, ^uint64(0)})
	if err != nil || it.Key.ObjectID != id || it.Key.Type != RootItemKey || len(it.Data) < 239 {
		t.Fatalf("root item of tree %d: %v %v", id, it.Key, err)
	}
	le := binary.LittleEndian
	return fs.treeAt(id, le.Uint64(it.Data[176:]), it.Data[238], le.Uint64(it.Data[160:]))
}

// manyFilesImage makes a 4 KiB-node image whose top-level fs tree has
// several levels: n small files put in by mkfs --rootdir.
func manyFilesImage(t testing.TB, n int, mkfsArgs ...string) string {
	t.Helper()
	dir := t.TempDir()
	writeManyFiles(t, dir, n)
	return newTestImage(t, 300, append([]string{"-n", "4k", "--rootdir", dir}, mkfsArgs...)...)
}

// manyFileName is the name of file i of writeManyFiles: long, so that few
// files make a deep tree (creating files is the slow part of these tests).
func manyFileName(i int) string { return fmt.Sprintf("file-%05d-%s", i, strings.Repeat("n", 240)) }

func writeManyFiles(t testing.TB, dir string, n int) {
	t.Helper()
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, manyFileName(i)), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func checkDeepTrees(t *testing.T, imgs []string) {
	t.Helper()
	fs, err := Open(imgs...)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	tr := fsTreeForTest(t, fs, FSTreeID)
	if tr.level < 2 {
		t.Fatalf("fs tree has level %d, want a deeper tree", tr.level)
	}
	checkTreeAgainstDump(t, imgs, tr, "5")
	checkTreeAgainstDump(t, imgs, fsTreeForTest(t, fs, ExtentTreeID), "extent")
}

func TestWalkDeepTree(t *testing.T) {
	for _, args := range [][]string{nil, {"-m", "dup"}, {"--csum", "sha256"}} {
		t.Run(fmt.Sprint(args), func(t *testing.T) {
			checkDeepTrees(t, []string{manyFilesImage(t, 600, args...)})
		})
	}
}

// TestWalkDeepTreeMultiDevice fills multi-device filesystems through the
// kernel (mkfs --rootdir takes one device only) so that tree blocks land on
// every stripe.
func TestWalkDeepTreeMultiDevice(t *testing.T) {
	for _, c := range []struct {
		profile string
		devs    int
	}{{"raid0", 2}, {"raid1", 2}, {"raid10", 4}, {"raid1c3", 3}, {"raid5", 3}, {"raid6", 4}} {
		t.Run(c.profile, func(t *testing.T) {
			imgs := newTestImages(t, c.devs, 300, "-n", "4k", "-d", c.profile, "-m", c.profile)
			mnt := mountImages(t, imgs, "")
			writeManyFiles(t, mnt, 600)
			unmount(t, mnt)
			checkDeepTrees(t, imgs)
		})
	}
}

func allKeys(t testing.TB, tr Tree) []Key {
	t.Helper()
	var keys []Key
	if err := tr.Walk(Key{}, MaxKey, func(it Item) error { keys = append(keys, it.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestSearch(t *testing.T) {
	fs, err := Open(manyFilesImage(t, 600))
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	tr := fsTreeForTest(t, fs, FSTreeID)
	keys := allKeys(t, tr)
	for i, k := range keys {
		it, err := tr.Search(k)
		if err != nil || it.Key != k {
			t.Fatalf("Search(%v) = %v, %v", k, it.Key, err)
		}
		after := Key{k.ObjectID, k.Type, k.Offset + 1}
		if i+1 < len(keys) && keys[i+1] != after {
			if _, err := tr.Search(after); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Search(%v) of a missing key: %v", after, err)
			}
			if it, err := tr.SearchBefore(after); err != nil || it.Key != k {
				t.Fatalf("SearchBefore(%v) = %v, %v; want %v", after, it.Key, err, k)
			}
		}
	}
	if _, err := tr.SearchBefore(Key{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("SearchBefore before the first key: %v", err)
	}
	if it, err := tr.SearchBefore(MaxKey); err != nil || it.Key != keys[len(keys)-1] {
		t.Errorf("SearchBefore(MaxKey) = %v, %v", it.Key, err)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		a, b := rng.IntN(len(keys)), rng.IntN(len(keys))
		from, to := keys[min(a, b)], keys[max(a, b)]
		if rng.IntN(2) == 0 && from.Offset > 0 { // a bound that is not a key
			from.Offset--
		}
		var got []Key
		if err := tr.Walk(from, to, func(it Item) error { got = append(got, it.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		var want []Key
		for _, k := range keys {
			if k.Compare(from) >= 0 && k.Compare(to) <= 0 {
				want = append(want, k)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Walk(%v, %v): got %d keys, want %d", from, to, len(got), len(want))
		}
	}

	n := 0
	err = tr.Walk(Key{}, MaxKey, func(Item) error {
		if n++; n == 10 {
			return ErrStopWalk
		}
		return nil
	})
	if err != nil || n != 10 {
		t.Errorf("ErrStopWalk: %v after %d items", err, n)
	}
	errBoom := errors.New("boom")
	if err := tr.Walk(Key{}, MaxKey, func(Item) error { return errBoom }); err != errBoom {
		t.Errorf("Walk callback error: got %v", err)
	}
}

// TestConcurrentWalks walks one tree from many goroutines through a cache
// far smaller than the tree (run with -race).
func TestConcurrentWalks(t *testing.T) {
	fs, err := Open(manyFilesImage(t, 600))
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	fs.blocks = newNodeCache(20 * 4096)
	tr := fsTreeForTest(t, fs, FSTreeID)
	want := fmt.Sprint(allKeys(t, tr))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if got := fmt.Sprint(allKeys(t, tr)); got != want {
				t.Error("concurrent walk differs")
			}
		})
	}
	wg.Wait()
	if fs.blocks.Used() > 20*4096 {
		t.Errorf("cache holds %d bytes, bound is %d", fs.blocks.Used(), 20*4096)
	}
}

// BenchmarkWalk walks a whole 5,000-file fs tree (4 KiB nodes): cold opens
// a fresh filesystem per walk, so every block comes from the image file.
func BenchmarkWalk(b *testing.B) {
	img := manyFilesImage(b, 5000)
	walk := func(b *testing.B, fs *FS) {
		items := 0
		must(b, fsTreeForTest(b, fs, FSTreeID).Walk(Key{}, MaxKey, func(Item) error { items++; return nil }))
		b.ReportMetric(float64(items), "items/op")
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			fs, err := Open(img)
			must(b, err)
			walk(b, fs)
			fs.Close()
		}
	})
	b.Run("warm", func(b *testing.B) {
		fs, err := Open(img)
		must(b, err)
		defer fs.Close()
		for b.Loop() {
			walk(b, fs)
		}
	})
}

// BenchmarkSearch looks up random keys of a warm 5,000-file fs tree.
func BenchmarkSearch(b *testing.B) {
	fs, err := Open(manyFilesImage(b, 5000))
	must(b, err)
	defer fs.Close()
	tr := fsTreeForTest(b, fs, FSTreeID)
	keys := allKeys(b, tr)
	rng := rand.New(rand.NewPCG(3, 4))
	for b.Loop() {
		if _, err := tr.Search(keys[rng.IntN(len(keys))]); err != nil {
			b.Fatal(err)
		}
	}
}
