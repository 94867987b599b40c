package test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sendfs/btrfsread"
	"sendfs/sendgen"
)

// BenchmarkLiveDevice prints what reading a block device coherently costs:
// full sends of the same idle filesystem from its image file (warm in the
// page cache), from its loop block device read the way sendfs did before
// (buffered reads only, which can be stale while the kernel has the device
// mounted), and from the same device as sendfs reads it now (buffered,
// stale pages dropped when a block fails validation, the superblock and
// data without a checksum read past the cache). Those two start each run
// with the device's page cache dropped (blockdev --flushbufs), like with
// like; the last column is the same with the device's cache warm, as for a
// second send of a snapshot. Best of three, in
// process, to io.Discard. SENDFS_BENCH_SMALL=1 makes the data ten times
// smaller.
func BenchmarkLiveDevice(b *testing.B) {
	requireRoot(b)
	scale := benchScale()
	fs := newFS(b, fsOpts{Size: 8 << 30})
	big := subvolCreate(b, fs, "big")
	for i := range 4 {
		writeFile(b, filepath.Join(big, fmt.Sprintf("f%d", i)), random(256<<20/scale, uint64(i)))
	}
	snapshotRO(b, fs, "big", "snaps/big")
	nfiles := 30000 / scale
	smallFiles(b, subvolCreate(b, fs, "small"), nfiles, 8000)
	snapshotRO(b, fs, "small", "snaps/small")
	unmount(b, fs) // idle: nothing writes the device any more

	fmt.Printf("\n%-28s %10s %12s %12s %12s %9s %12s %9s\n", "full send (best of 3)", "stream", "image file", "device, old", "device, new", "new/image", "new, warm", "warm/image")
	for _, snap := range []string{"snaps/big", "snaps/small"} {
		img, n := bestSend(b, snap, func() *btrfsread.FS { return openFS(b, fs.Images) })
		before, _ := bestSend(b, snap, func() *btrfsread.FS { flushDevices(b, fs); return bufferedFS(b, fs.Loops) })
		after, _ := bestSend(b, snap, func() *btrfsread.FS { flushDevices(b, fs); return openFS(b, fs.Loops) })
		warm, _ := bestSend(b, snap, func() *btrfsread.FS { return openFS(b, fs.Loops) })
		fmt.Printf("%-28s %10s %12v %12v %12v %8.2fx %12v %8.2fx\n", snap, byteSize(n),
			img.Round(time.Millisecond), before.Round(time.Millisecond), after.Round(time.Millisecond), float64(after)/float64(img),
			warm.Round(time.Millisecond), float64(warm)/float64(img))
	}
}

// benchScale divides the benchmarks' data sizes: 10 with
// SENDFS_BENCH_SMALL=1, else 1.
func benchScale() int {
	if os.Getenv("SENDFS_BENCH_SMALL") != "" {
		return 10
	}
	return 1
}

// smallFiles writes n files of 1 to maxSize bytes into dir, 1000 per
// subdirectory.
func smallFiles(b *testing.B, dir string, n, maxSize int) {
	for i := range n {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", i/1000))
		if i%1000 == 0 {
			mustMkdir(b, sub)
		}
		writeFile(b, filepath.Join(sub, fmt.Sprintf("f%d", i)), patterned(1+i%maxSize, uint64(i)))
	}
}

// bestSend times three full sends of snap, each on a filesystem open gives,
// and returns the best time and the stream's length.
func bestSend(b *testing.B, snap string, open func() *btrfsread.FS) (time.Duration, int64) {
	var best time.Duration
	var n int64
	for range 3 {
		fsys := open()
		t0 := time.Now()
		sv, err := fsys.FindSubvolume(snap)
		must(b, err)
		s, err := sendgen.NewStream(sv, nil, sendgen.Options{})
		must(b, err)
		n, err = s.WriteTo(context.Background(), io.Discard, nil)
		must(b, err)
		if d := time.Since(t0); best == 0 || d < best {
			best = d
		}
		must(b, fsys.Close())
	}
	return best, n
}

func openFS(b *testing.B, devs []string) *btrfsread.FS {
	fsys, err := btrfsread.Open(devs...)
	must(b, err)
	return fsys
}

// bufferedFS opens devs the way sendfs did before reading block devices
// coherently: plain buffered reads.
func bufferedFS(b *testing.B, devs []string) *btrfsread.FS {
	var ds []btrfsread.Device
	for _, p := range devs {
		f, err := os.Open(p)
		must(b, err)
		b.Cleanup(func() { f.Close() })
		size, err := f.Seek(0, io.SeekEnd)
		must(b, err)
		ds = append(ds, btrfsread.Device{Name: p, R: f, Size: size})
	}
	fsys, err := btrfsread.New(ds)
	must(b, err)
	return fsys
}

// flushDevices drops the page cache of the loop devices.
func flushDevices(b *testing.B, fs *btrfsFS) {
	for _, l := range fs.Loops {
		run(b, "blockdev", "--flushbufs", l)
	}
}
