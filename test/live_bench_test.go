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

// BenchmarkLiveDevice prints what reading a block device costs: full sends
// of the same idle filesystem, in process to io.Discard, from its image
// file (warm in the page cache), from its loop block device read through
// the page cache as sendfs did before issue 13 (buffered), and as sendfs
// reads it now (O_DIRECT through cached windows with read-ahead,
// btrfsread/bdev.go). The device runs start with its page cache dropped
// (blockdev --flushbufs), like with like. Best of three. Then the kernel's
// btrfs send against the sendfs binary on the same device (deviceSends).
// SENDFS_BENCH_SMALL=1 makes the data ten times smaller.
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

	fmt.Printf("\n%-28s %10s %12s %12s %12s %9s\n", "full send (best of 3)", "stream", "image file", "dev buffered", "device", "dev/image")
	for _, snap := range []string{"snaps/big", "snaps/small"} {
		img, n := bestSend(b, snap, func() *btrfsread.FS { return openFS(b, fs.Images) })
		buffered, _ := bestSend(b, snap, func() *btrfsread.FS { flushDevices(b, fs); return bufferedFS(b, fs.Loops) })
		direct, _ := bestSend(b, snap, func() *btrfsread.FS { flushDevices(b, fs); return openFS(b, fs.Loops) })
		fmt.Printf("%-28s %10s %12v %12v %12v %8.2fx\n", snap, byteSize(n),
			img.Round(time.Millisecond), buffered.Round(time.Millisecond), direct.Round(time.Millisecond), float64(direct)/float64(img))
	}
	deviceSends(b, fs, sendfsBinary(b), []deviceSend{{"full: 4 big files", "snaps/big", ""}, {fmt.Sprintf("full: %d small files", nfiles), "snaps/small", ""}})
}

// deviceSend is one row of deviceSends: a full send of child, or an
// incremental one from parent.
type deviceSend struct {
	what          string
	child, parent string
}

// deviceSendResult is what deviceSends measured for one send: best times,
// peak RSS (KiB) of the sendfs process.
type deviceSendResult struct {
	deviceSend
	kernel, sendfs time.Duration
	sendfsRSS      int64
}

// deviceSends prints, and returns, the kernel's btrfs send against sendfs
// send (the binary bin) of the same snapshots on the same loop block
// devices of fs (deviceSendTimes, best of three).
func deviceSends(b *testing.B, fs *btrfsFS, bin string, sends []deviceSend) []deviceSendResult {
	fmt.Printf("\n%-34s %10s %10s %8s %11s\n", "on the block device, cache dropped", "kernel", "sendfs", "speed-up", "sendfs RSS")
	var out []deviceSendResult
	for _, s := range sends {
		r := deviceSendResult{deviceSend: s}
		r.kernel, r.sendfs, r.sendfsRSS = deviceSendTimes(b, fs, bin, 3, s.child, s.parent)
		fmt.Printf("%-34s %10v %10v %7.2fx %7d KiB\n", s.what, r.kernel.Round(time.Millisecond), r.sendfs.Round(time.Millisecond),
			float64(r.kernel)/float64(r.sendfs), r.sendfsRSS)
		out = append(out, r)
	}
	return out
}

// deviceSendTimes returns the best of runs times of the kernel's btrfs
// send of child (incremental from parent unless it is "") on a fresh
// read-only mount of fs's loop devices, and of sendfs send (the binary
// bin) reading the same devices, with sendfs's peak RSS (KiB). fs must be
// unmounted. Both write to /dev/null, and the devices' page cache is
// dropped before every run (blockdev --flushbufs; the image files behind
// them stay cached). This is the case users have: the kernel's send drops
// the pages it read, so it does not get faster on a second run either.
func deviceSendTimes(b *testing.B, fs *btrfsFS, bin string, runs int, child, parent string) (kernel, sendfs time.Duration, rss int64) {
	kargs := []string{"send", "-q"}
	sargs := []string{"send", "-q"}
	if parent != "" {
		kargs = append(kargs, "-p", fs.path(parent))
		sargs = append(sargs, "-p", parent)
	}
	kernel = best(runs, func() time.Duration {
		flushDevices(b, fs)
		fs.Mount(b, true)
		defer unmount(b, fs)
		d, _, _ := runRSS(b, "btrfs", append(kargs, fs.path(child))...)
		return d
	})
	sendfs = best(runs, func() time.Duration {
		flushDevices(b, fs)
		d, kib, _ := runRSS(b, bin, append(append(sargs, fs.Loops...), child)...)
		rss = max(rss, kib)
		return d
	})
	return kernel, sendfs, rss
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

// bufferedFS opens devs with plain buffered reads: the read pattern of
// sendfs before issue 13 (whose stale-page drops cost nothing on an idle
// device).
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
