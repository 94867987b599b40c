package test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkFUSE prints, for one image in one run: the throughput of a full
// stream read with cat through the mount, against `sendfs send` and the
// kernel's `btrfs send` to /dev/null; the time of `ls -l` on a from/ with
// 100 entries (empty size cache, size cache on disk, second listing); and
// the time to read the first 16 KiB of each of those 100 streams, what a
// file manager does to guess their types. Run it with `make bench`.
func BenchmarkFUSE(b *testing.B) {
	requireFUSE(b)
	const dataSize = 256 << 20
	fs := newFS(b, fsOpts{Size: 4 << 30})
	data := subvolCreate(b, fs, "data")
	for i := range dataSize / (16 << 20) {
		// Half random, half compressible text, in 16 MiB files.
		content := append(random(8<<20, uint64(i)), patterned(8<<20, uint64(i))...)
		writeFile(b, filepath.Join(data, fmt.Sprintf("f%02d", i)), content)
	}
	snapshotRO(b, fs, "data", "snaps/big")
	const parents = 100
	last := growingLineage(b, fs, "many", "snaps/m", parents+1)
	remountRO(b, fs)
	sendfs := sendfsBinary(b)

	// Throughput: the best of three runs each (this VM is noisy); each FUSE
	// run on a fresh mount, since the page cache outlives a file's close.
	const runs = 3
	kernel := best(runs, func() time.Duration {
		return timeCmd(b, "sh", "-c", `btrfs send -q "$1" > /dev/null`, "sh", fs.path("snaps/big"))
	})
	cli := best(runs, func() time.Duration {
		return timeCmd(b, "sh", "-c", `"$@" > /dev/null`, "sh", sendfs, "send", "-q", fs.Images[0], "snaps/big")
	})
	cliPipe := best(runs, func() time.Duration {
		return timeCmd(b, "sh", "-c", `"$@" | cat > /dev/null`, "sh", sendfs, "send", "-q", fs.Images[0], "snaps/big")
	})
	streamSize, err := sendfsSize(b, fs.Images, "snaps/big", "")
	must(b, err)

	cacheDir := b.TempDir()
	m := startMount(b, fs.Images, "--cache-dir", cacheDir)
	from := filepath.Dir(m.streamPath(last, "snaps/m.000"))
	lsCold := timeCmd(b, "ls", "-l", from)
	lsAgain := timeCmd(b, "ls", "-l", from)
	heads := timeHeads(b, from)
	headsAgain := timeHeads(b, from)
	unmountFUSE(b, m)

	var lsDisk time.Duration
	fuseCat := best(runs, func() time.Duration {
		m := startMount(b, fs.Images, "--cache-dir", cacheDir)
		defer unmountFUSE(b, m)
		if lsDisk == 0 {
			lsDisk = timeCmd(b, "ls", "-l", filepath.Dir(m.streamPath(last, "snaps/m.000")))
		}
		// Read once the background sizing (from the cache dir) is done.
		if m.waitLog(b, "stream sizes ready", 5*time.Minute) == "" {
			b.Fatalf("sizes not warmed in 5 minutes\n%s", m.stderr)
		}
		return timeCmd(b, "sh", "-c", `cat "$1" > /dev/null`, "sh", m.streamPath("snaps/big", ""))
	})

	mbps := func(d time.Duration) float64 { return float64(streamSize) / 1e6 / d.Seconds() }
	fmt.Printf("\nFUSE benchmark: stream of %d MB (snapshot with %d MiB of files), from/ with %d entries\n",
		streamSize/1e6, dataSize>>20, parents)
	fmt.Printf("  %-44s %10s %10s %8s\n", "what", "time", "MB/s", "ratio")
	row := func(what string, d time.Duration, ratioTo time.Duration) {
		fmt.Printf("  %-44s %10s %10.0f %8.2f\n", what, d.Round(time.Millisecond), mbps(d), ratioTo.Seconds()/d.Seconds())
	}
	row("kernel btrfs send > /dev/null", kernel, kernel)
	row("sendfs send > /dev/null (ratio vs kernel)", cli, kernel)
	row("sendfs send | cat > /dev/null (vs kernel)", cliPipe, kernel)
	row("cat full.stream via FUSE (ratio vs CLI)", fuseCat, cli)
	row("  same, ratio vs CLI through cat", fuseCat, cliPipe)
	fmt.Printf("  %-44s %10s\n", "ls -l from/, empty size cache (just mounted)", lsCold.Round(time.Millisecond))
	fmt.Printf("  %-44s %10s\n", "ls -l from/, sizes on disk (new mount)", lsDisk.Round(time.Millisecond))
	fmt.Printf("  %-44s %10s\n", "ls -l from/, second listing", lsAgain.Round(time.Millisecond))
	fmt.Printf("  %-44s %10s\n", "first 16 KiB of each from/ stream", heads.Round(time.Millisecond))
	fmt.Printf("  %-44s %10s\n", "  again (page cache)", headsAgain.Round(time.Millisecond))
	b.ReportMetric(mbps(fuseCat), "fuse-MB/s")
	b.ReportMetric(mbps(cli), "cli-MB/s")
	b.ReportMetric(mbps(kernel), "kernel-MB/s")
}

// best returns the shortest of n timings.
func best(n int, timing func() time.Duration) time.Duration {
	d := timing()
	for range n - 1 {
		d = min(d, timing())
	}
	return d
}

// timeCmd runs a command once and returns how long it took.
func timeCmd(b *testing.B, name string, args ...string) time.Duration {
	b.Helper()
	start := time.Now()
	cmd := exec.Command(name, args...)
	cmd.Stdout = io.Discard
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return time.Since(start)
}

// timeHeads reads the first 16 KiB of every file in dir.
func timeHeads(b *testing.B, dir string) time.Duration {
	b.Helper()
	start := time.Now()
	ents, err := os.ReadDir(dir)
	must(b, err)
	buf := make([]byte, 16<<10)
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		must(b, err)
		if _, err := io.ReadFull(f, buf); err != nil && err != io.ErrUnexpectedEOF {
			b.Fatalf("%s: %v", e.Name(), err)
		}
		f.Close()
	}
	return time.Since(start)
}

// unmountFUSE unmounts with fusermount3 -u and waits for sendfs to exit.
func unmountFUSE(b *testing.B, m *sendfsMount) {
	b.Helper()
	run(b, "fusermount3", "-u", m.dir)
	if err := m.waitExit(b, 30*time.Second); err != nil {
		b.Fatalf("sendfs mount: %v\n%s", err, m.stderr)
	}
}
