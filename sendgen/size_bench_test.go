package sendgen

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sendfs/btrfsread"
)

// BenchmarkSize is the counting pass (Stream.Size) of a full stream of many
// small files, and of an incremental stream where a tenth of them changed:
// the engine and the receiver-namespace check with no file data read.
// Each iteration counts a new Stream on the same open filesystem (tree
// blocks cached, as on a mount). SENDFS_BENCH_IMAGE=IMG with
// SENDFS_BENCH_SUBVOL=NAME (and SENDFS_BENCH_PARENT=NAME) counts a
// subvolume of an image of your own instead: the corpus is 100,000
// files.
func BenchmarkSize(b *testing.B) {
	img, child, parent := os.Getenv("SENDFS_BENCH_IMAGE"), os.Getenv("SENDFS_BENCH_SUBVOL"), os.Getenv("SENDFS_BENCH_PARENT")
	if img == "" {
		img, child, parent = smallFilesImage(b, 20000), "snap2", "snap1"
	}
	names := []string{child}
	if parent != "" {
		names = append(names, parent)
	}
	svs := openSubvolumes(b, img, names...)
	pairs := []struct {
		name          string
		child, parent *btrfsread.Subvolume
	}{{"full", svs[0], nil}}
	if parent != "" {
		pairs = append(pairs, struct {
			name          string
			child, parent *btrfsread.Subvolume
		}{"incremental", svs[0], svs[1]})
	}
	// "+plan": the pass of a mount with a cache directory, which writes
	// the stream's plan there on the way.
	for _, p := range append(pairs, struct {
		name          string
		child, parent *btrfsread.Subvolume
	}{"full+plan", svs[0], nil}) {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			dir := b.TempDir()
			for b.Loop() {
				st, err := NewStream(p.child, p.parent, Options{})
				if err != nil {
					b.Fatal(err)
				}
				if strings.HasSuffix(p.name, "+plan") {
					os.RemoveAll(dir)
					st.UsePlanCache(NewPlanCache(dir, slog.New(slog.DiscardHandler)))
				}
				n, err := st.Size(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(n)
			}
		})
	}
}

// smallFilesImage builds an image of n files of 4,000 bytes in directories
// of 1,000 (mkfs.btrfs --rootdir), snapshotted as snap1, then again as snap2
// after every tenth file was rewritten.
func smallFilesImage(b *testing.B, n int) string {
	dir := b.TempDir()
	root := filepath.Join(dir, "root")
	content := make([]byte, 4000)
	name := func(i int) string { return filepath.Join(fmt.Sprintf("d%03d", i/1000), fmt.Sprintf("f%d", i)) }
	for i := range n {
		p := filepath.Join(root, name(i))
		if i%1000 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
		}
		content[0], content[1] = byte(i), byte(i>>8)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	img := mkfsRootdir(b, root, 1<<30)
	snapshot(b, img, func(mnt string) error {
		for i := 0; i < n; i += 10 {
			if err := os.WriteFile(filepath.Join(mnt, name(i)), []byte("changed"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	return img
}
