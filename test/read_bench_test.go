package test

import (
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"sendfs/btrfsread"
)

// BenchmarkReadAll prints, from one run on one image, the time to read every
// file of a 2 GiB subvolume through btrfsread (checksums verified) beside
// `cat` of the same files on the mounted filesystem, both with warm caches
// (best of three), and their ratio. Run with `make bench`;
// SENDFS_BENCH_SMALL=1 makes the subvolume ten times smaller.
func BenchmarkReadAll(b *testing.B) {
	requireRoot(b)
	scale := benchScale()
	fs := newFS(b, fsOpts{Size: 8 << 30})
	sv := subvolCreate(b, fs, "data")
	var total int64
	for i := range 15 {
		n := 128 << 20 / scale
		writeFile(b, filepath.Join(sv, fmt.Sprintf("big%d", i)), random(n, uint64(i)))
		total += int64(n)
	}
	mustMkdir(b, filepath.Join(sv, "small"))
	for i := range 2000 / scale {
		n := 64 << 10
		writeFile(b, filepath.Join(sv, "small", fmt.Sprintf("f%d", i)), patterned(n, uint64(i)))
		total += int64(n)
	}
	snapshotRO(b, fs, "data", "snaps/data")
	remountRO(b, fs)

	catTime := best3(b, func() {
		cmd := exec.Command("sh", "-c", "find . -type f -exec cat {} + >/dev/null")
		cmd.Dir = fs.path("snaps/data")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("cat: %v\n%s", err, out)
		}
	})
	bfs, err := btrfsread.Open(fs.Images...)
	must(b, err)
	defer bfs.Close()
	snap, err := bfs.FindSubvolume("snaps/data")
	must(b, err)
	var read int64
	ourTime := best3(b, func() { read = readTree(b, snap, btrfsread.FirstFreeObjectID) })
	if read != total {
		b.Fatalf("btrfsread read %d bytes, the files hold %d", read, total)
	}
	fmt.Printf("\n%-40s %10s %10s %10s %7s\n", "read every file (best of 3)", "bytes", "cat", "btrfsread", "ratio")
	fmt.Printf("%-40s %10s %10v %10v %6.2fx\n", "2 GiB subvolume: 15 big, 2000 small files", byteSize(total),
		catTime.Round(time.Millisecond), ourTime.Round(time.Millisecond), float64(ourTime)/float64(catTime))
	fmt.Printf("%-40s %10s %10s %10s\n", "", "MB/s", mbPerSec(total, catTime), mbPerSec(total, ourTime))
}

// readTree reads every regular file below directory dir of sv in 1 MiB
// pieces and returns the bytes read.
func readTree(b *testing.B, sv *btrfsread.Subvolume, dir uint64) int64 {
	ents, err := sv.ReadDir(dir)
	must(b, err)
	buf := make([]byte, 1<<20)
	var n int64
	for _, e := range ents {
		switch e.Type {
		case btrfsread.FtDir:
			n += readTree(b, sv, e.Location.ObjectID)
		case btrfsread.FtRegFile:
			for off := int64(0); ; {
				m, err := sv.ReadAt(e.Location.ObjectID, buf, off)
				off += int64(m)
				n += int64(m)
				if err == io.EOF {
					break
				}
				must(b, err)
			}
		}
	}
	return n
}

func best3(b *testing.B, f func()) time.Duration {
	var best time.Duration
	for range 3 {
		t0 := time.Now()
		f()
		if d := time.Since(t0); best == 0 || d < best {
			best = d
		}
	}
	return best
}
