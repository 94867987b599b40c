package test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkSend prints, from one run on one image, sendfs send against the
// kernel's btrfs send, both to /dev/null with warm caches (best of three):
// full sends of a few big files, of 100,000 small files and of a
// zstd-compressed subvolume (decompressed, and as stored with
// --compressed-data, where the kernel's stream length is printed too);
// incremental sends between snapshots of the
// 100,000-file subvolume differing in 10 files and in 10% of the files.
// Then the same without compression on the loop block device, its cache
// dropped before every run (deviceSends).
// Peak memory is the sendfs process's; the kernel's send runs in the kernel,
// so its column shows only the btrfs tool's own RSS. Run with `make bench`;
// SENDFS_BENCH_SMALL=1 makes every dataset ten times smaller.
func BenchmarkSend(b *testing.B) {
	requireRoot(b)
	scale := benchScale()
	fs := newFS(b, fsOpts{Size: 16 << 30})
	start := time.Now()
	big := subvolCreate(b, fs, "big")
	for i := range 4 {
		writeFile(b, filepath.Join(big, fmt.Sprintf("f%d", i)), random(512<<20/scale, uint64(i)))
	}
	snapshotRO(b, fs, "big", "snaps/big")

	nfiles := 100000 / scale
	small := subvolCreate(b, fs, "small")
	smallFiles(b, small, nfiles, 4000)
	snapshotRO(b, fs, "small", "snaps/small")
	touch := func(n int) {
		for i := range n {
			k := i * (nfiles / n)
			writeAt(b, filepath.Join(small, fmt.Sprintf("d%03d", k/1000), fmt.Sprintf("f%d", k)), 0, []byte("changed"))
		}
	}
	touch(10)
	snapshotRO(b, fs, "small", "snaps/small-10")
	touch(nfiles / 10)
	snapshotRO(b, fs, "small", "snaps/small-10pct")

	z := subvolCreate(b, fs, "zstd")
	setCompression(b, z, "zstd")
	for i := range 4 {
		writeFile(b, filepath.Join(z, fmt.Sprintf("f%d", i)), textLines(256<<20/scale, uint64(i)))
	}
	snapshotRO(b, fs, "zstd", "snaps/zstd")
	remountRO(b, fs)
	b.Logf("built the image in %v", time.Since(start).Round(time.Second))

	sendfs := sendfsBinary(b)
	fmt.Printf("\n%-34s %10s %10s %10s %7s %11s %11s\n", "send to /dev/null (best of 3)", "stream", "kernel", "sendfs", "ratio", "kernel RSS", "sendfs RSS")
	for _, c := range []struct {
		what          string
		child, parent string
		files         int
		opts          []string
	}{
		{"full: 4 big files", "snaps/big", "", 4, nil},
		{fmt.Sprintf("full: %d small files", nfiles), "snaps/small", "", nfiles, nil},
		{"full: zstd-compressed files", "snaps/zstd", "", 4, nil},
		{"full: zstd, --compressed-data", "snaps/zstd", "", 4, []string{"--compressed-data"}},
		{fmt.Sprintf("incremental: %d files, 10 changed", nfiles), "snaps/small-10", "snaps/small", 10, nil},
		{fmt.Sprintf("incremental: %d files, 10%% changed", nfiles), "snaps/small-10pct", "snaps/small-10", nfiles / 10, nil},
	} {
		kargs := append([]string{"send", "-q"}, c.opts...)
		sargs := append([]string{"send", "-q"}, c.opts...)
		if c.parent != "" {
			kargs = append(kargs, "-p", fs.path(c.parent))
			sargs = append(sargs, "-p", c.parent)
		}
		kargs = append(kargs, fs.path(c.child))
		sargs = append(append(sargs, fs.Images...), c.child)
		kt, krss := bestRun(b, "btrfs", kargs...)
		st, srss := bestRun(b, sendfs, sargs...)
		size, err := sendfsSize(b, fs.Images, c.child, c.parent, c.opts...)
		must(b, err)
		if c.opts != nil {
			kn := len(kernelSend(b, fs.Mnt, fs.path(c.child), "", c.opts...))
			fmt.Printf("%-34s stream bytes: kernel %d, sendfs %d\n", "", kn, size)
		}
		fmt.Printf("%-34s %10s %10v %10v %6.2fx %8d KiB %8d KiB\n", c.what, byteSize(size),
			kt.Round(time.Millisecond), st.Round(time.Millisecond), float64(st)/float64(kt), krss, srss)
		if c.files >= 1000 {
			fmt.Printf("%-34s %10s %10s %10s\n", "", "per file", perFile(kt, c.files), perFile(st, c.files))
		} else if c.parent == "" {
			fmt.Printf("%-34s %10s %10s %10s\n", "", "MB/s", mbPerSec(size, kt), mbPerSec(size, st))
		}
	}
	unmount(b, fs)
	deviceSends(b, fs, sendfs, []deviceSend{
		{"full: 4 big files", "snaps/big", ""},
		{fmt.Sprintf("full: %d small files", nfiles), "snaps/small", ""},
		{fmt.Sprintf("incremental: %d files, 10 changed", nfiles), "snaps/small-10", "snaps/small"},
		{fmt.Sprintf("incremental: %d files, 10%% changed", nfiles), "snaps/small-10pct", "snaps/small-10"},
	})
}

// bestRun runs a command three times (see runRSS) and returns its best
// time and its peak RSS (KiB).
func bestRun(b *testing.B, name string, args ...string) (time.Duration, int64) {
	var rss int64
	d := best(3, func() time.Duration {
		d, kib, _ := runRSS(b, name, args...)
		rss = max(rss, kib)
		return d
	})
	return d, rss
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
}

func perFile(d time.Duration, files int) string {
	return fmt.Sprintf("%.1f µs", float64(d.Microseconds())/float64(files))
}

func mbPerSec(n int64, d time.Duration) string {
	return fmt.Sprintf("%.0f", float64(n)/1e6/d.Seconds())
}
