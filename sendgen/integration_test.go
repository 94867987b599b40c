package sendgen

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sendfs/btrfsread"
	"sendfs/internal/testimage"
)

// TestImageStreamConsistency runs the real engine and btrfsread on an image
// filled by mkfs.btrfs --rootdir and snapshotted twice (the top level itself
// cannot be sent): for a full and an incremental stream, the counted size,
// the pipelined WriteTo, random ranges through a Reader and a second run
// agree, and btrfs receive --dump parses the stream.
func TestImageStreamConsistency(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	rng := rand.New(rand.NewPCG(4, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	files := map[string][]byte{
		"empty":          nil,
		"inline":         []byte("small file kept inline\n"),
		"dir/page":       random(4096),
		"dir/odd":        random(100_003),
		"dir/sub/big":    random(6 << 20),
		"dir/sub/zeroes": make([]byte, 300_000),
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sparse, err := os.Create(filepath.Join(root, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sparse.WriteAt(random(70_000), 5<<20); err != nil {
		t.Fatal(err)
	}
	sparse.Close()
	// No symlink: mkfs.btrfs 6.2 --rootdir stores its target with a NUL,
	// which btrfsread rightly rejects.
	img := mkfsRootdir(t, root, 256<<20)

	snapshot(t, img, func(mnt string) error {
		if err := os.WriteFile(filepath.Join(mnt, "dir/odd"), random(5000), 0o644); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(mnt, "dir/page"), filepath.Join(mnt, "page-moved")); err != nil {
			return err
		}
		return os.Remove(filepath.Join(mnt, "inline"))
	})

	svs := openSubvolumes(t, img, "snap1", "snap2")
	snap1, snap2 := svs[0], svs[1]
	checkImageStream(t, snap1, nil, rng, "subvol          ./snap1", "/big ", "./snap1/sparse")
	checkImageStream(t, snap2, snap1, rng, "snapshot        ./snap2", "./snap2/page-moved", "unlink          ./snap2/inline", "./snap2/dir/odd")
}

// mkfsRootdir makes an image of size bytes beside root holding root's files
// (mkfs.btrfs --rootdir) and returns its path.
func mkfsRootdir(t testing.TB, root string, size int64) string {
	t.Helper()
	img := testimage.Images(t, filepath.Dir(root), 1, size)[0]
	testimage.Mkfs(t, []string{"--rootdir", root}, img)
	return img
}

// openSubvolumes opens img (closed when t ends) and finds the subvolumes
// named.
func openSubvolumes(t testing.TB, img string, names ...string) []*btrfsread.Subvolume {
	t.Helper()
	fs, err := btrfsread.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	svs := make([]*btrfsread.Subvolume, len(names))
	for i, name := range names {
		if svs[i], err = fs.FindSubvolume(name); err != nil {
			t.Fatal(err)
		}
	}
	return svs
}

// snapshot loop-mounts img, snapshots its top level read-only as snap1,
// calls change, snapshots again as snap2 and unmounts. It needs root and
// loop devices: without them it fails in CI and skips elsewhere.
func snapshot(t testing.TB, img string, change func(mnt string) error) {
	t.Helper()
	testimage.Require(t, true, "btrfs")
	fs := testimage.Attach(t, []string{img}, filepath.Join(filepath.Dir(img), "mnt"), false)
	fs.Mount(t, false)
	testimage.Run(t, "btrfs", "subvolume", "snapshot", "-r", fs.Mnt, filepath.Join(fs.Mnt, "snap1"))
	if err := change(fs.Mnt); err != nil {
		t.Fatal(err)
	}
	testimage.Run(t, "btrfs", "subvolume", "snapshot", "-r", fs.Mnt, filepath.Join(fs.Mnt, "snap2"))
	fs.Release(t)
}

// checkImageStream: the counted size, WriteTo, a second run and random
// ranges through a Reader agree, and btrfs receive --dump parses the stream
// into lines that contain wantInDump.
func checkImageStream(t *testing.T, child, parent *btrfsread.Subvolume, rng *rand.Rand, wantInDump ...string) {
	t.Helper()
	open := func() *Stream {
		s, err := NewStream(child, parent, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	size, err := s.Size(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stream := writeAll(t, s)
	if size != int64(len(stream)) {
		t.Fatalf("counted %d bytes, WriteTo wrote %d", size, len(stream))
	}
	if again := writeAll(t, open()); !bytes.Equal(again, stream) {
		t.Fatal("two runs of WriteTo differ")
	}
	checkRanges(t, open(), stream, 1000, 1<<20, rng)
	out, stderr, err := receiveDump(t, stream)
	if err != nil {
		t.Fatalf("btrfs receive --dump: %v: %s", err, stderr)
	}
	for _, want := range wantInDump {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %q:\n%s", want, out)
		}
	}
}
