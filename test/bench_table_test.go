package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sendfs/internal/testimage"
)

// BenchmarkTable prints issue 13's table in one run on one corpus: each
// row sendfs against its reference or goal, with sendfs's peak RSS (the
// CLI process's, or the mount's for rows read through the mount), as a
// Markdown table for the README, with the machine it ran on. The corpus is
// the issue's: 2 GiB of big files plus 100,000 small files (a 2.6 GB
// stream), in 8 snapshots, and a lineage of 101 small snapshots for from/.
// SENDFS_BENCH_SCALE=N divides its sizes by N (SENDFS_BENCH_SMALL=1 by 10).
// Run it with `make bench` (last) or `make bench-table`.
func BenchmarkTable(b *testing.B) {
	requireFUSE(b)
	testimage.Require(b, false, "rclone", "/usr/bin/time")
	c := buildTableCorpus(b, tableScale())
	one := func(row func(*testing.B) tableRow) func(*testing.B) []tableRow {
		return func(b *testing.B) []tableRow { return []tableRow{row(b)} }
	}
	measures := []struct {
		name string
		rows func(*testing.B) []tableRow
	}{
		{"cat", one(c.catRow)},
		{"rclone", one(c.rcloneRow)},
		{"firstbyte", one(c.firstByteRow)},
		{"stat", one(c.coldStatRow)},
		{"ls", one(c.coldListRow)},
		{"readers", one(c.readersRow)},
		{"kernel", c.kernelRows},
	}
	var names []string
	for _, m := range measures {
		names = append(names, m.name)
	}
	only := tableRowFilter(b, names)
	var rows []tableRow
	for _, m := range measures {
		if only == nil || only[m.name] {
			rows = append(rows, m.rows(b)...)
		}
	}
	c.printTable(rows)
}

// tableRowFilter is the set of rows SENDFS_BENCH_ROWS names (comma
// separated, from names), or nil for every row.
func tableRowFilter(b *testing.B, names []string) map[string]bool {
	s := os.Getenv("SENDFS_BENCH_ROWS")
	if s == "" {
		return nil
	}
	only := map[string]bool{}
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(names, name) {
			b.Fatalf("SENDFS_BENCH_ROWS=%q: no row %q (rows: %s)", s, name, strings.Join(names, ", "))
		}
		only[name] = true
	}
	return only
}

// tableScale is SENDFS_BENCH_SCALE when set, else benchScale().
func tableScale() int {
	s := os.Getenv("SENDFS_BENCH_SCALE")
	if s == "" {
		return benchScale()
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		panic(fmt.Sprintf("SENDFS_BENCH_SCALE=%q: want a positive integer", s))
	}
	return n
}

// tableCorpus is the filesystem BenchmarkTable measures.
type tableCorpus struct {
	fs       *btrfsFS
	sendfs   string
	scale    int
	nfiles   int
	full     string   // the corpus's first snapshot (snaps/data.0)
	child    string   // the next one, 10% of the small files changed (snaps/data.1)
	readers  []string // 8 snapshots of the corpus, data.0 to data.7
	last     string   // the last of the lineage whose from/ lists 100 parents
	size     int64    // the length of full's stream
	cacheDir string   // the sizes of every stream the mount warms
	built    time.Duration
}

const tableReaders = 8

func buildTableCorpus(b *testing.B, scale int) *tableCorpus {
	start := time.Now()
	c := &tableCorpus{
		fs:     newFS(b, fsOpts{Size: 16 << 30}),
		sendfs: sendfsBinary(b),
		scale:  scale,
		nfiles: 100000 / scale,
		full:   "snaps/data.0",
		child:  "snaps/data.1",
	}
	data := subvolCreate(b, c.fs, "data")
	mustMkdir(b, filepath.Join(data, "big"))
	for i := range 4 {
		writeFile(b, filepath.Join(data, "big", fmt.Sprintf("f%d", i)), random(512<<20/scale, uint64(i)))
	}
	mustMkdir(b, filepath.Join(data, "small"))
	smallFiles(b, filepath.Join(data, "small"), c.nfiles, 8000)
	snapshotRO(b, c.fs, "data", c.full)
	// The incremental: 10% of the small files and 64 MiB of a big file
	// rewritten. The other snapshots are the same tree, so that sizing
	// their incrementals costs the mount next to nothing.
	for i := 0; i < c.nfiles; i += 10 {
		writeAt(b, filepath.Join(data, "small", fmt.Sprintf("d%03d", i/1000), fmt.Sprintf("f%d", i)), 0, []byte("changed"))
	}
	writeAt(b, filepath.Join(data, "big", "f1"), 128<<20/int64(scale), random(64<<20/scale, 99))
	c.readers = []string{c.full}
	for i := 1; i < tableReaders; i++ {
		c.readers = append(c.readers, fmt.Sprintf("snaps/data.%d", i))
		snapshotRO(b, c.fs, "data", c.readers[i])
	}
	c.last = growingLineage(b, c.fs, "many", "snaps/m", 101)
	remountRO(b, c.fs)
	size, err := sendfsSize(b, c.fs.Images, c.full, "")
	must(b, err)
	c.size = size

	// The size cache the fresh mounts start with: what one mount computed.
	c.cacheDir = b.TempDir()
	m := startMount(b, c.fs.Images, "--cache-dir", c.cacheDir)
	if m.waitLog(b, "stream sizes ready", 30*time.Minute) == "" {
		b.Fatalf("the mount did not size its streams in 30 minutes\n%s", m.stderr)
	}
	unmountFUSE(b, m)
	c.built = time.Since(start)
	return c
}

// growingLineage creates subvolume sv with n read-only snapshots of it,
// <prefix>.000 on, one more small file in each, and returns the last
// snapshot's path from the top level: its from/ lists n-1 parents.
func growingLineage(b testing.TB, fs *btrfsFS, sv, prefix string, n int) string {
	dir := subvolCreate(b, fs, sv)
	var last string
	for i := range n {
		writeFile(b, filepath.Join(dir, fmt.Sprintf("f%03d", i)), patterned(4000+i, uint64(i)))
		last = fmt.Sprintf("%s.%03d", prefix, i)
		snapshotRO(b, fs, sv, last)
	}
	return last
}

// tableRow is one row of the table.
type tableRow struct {
	what        string
	sendfs, ref string  // the measurements, as printed
	ratio       float64 // ref over sendfs (times), 0 if none
	goal        string
	met         bool
	rss         int64 // KiB
}

// timeRow is a row whose number is a time with a goal.
func timeRow(what string, d, goal time.Duration, rss int64) tableRow {
	return tableRow{what: what, sendfs: fmtDur(d), ref: "—", goal: "≤ " + goal.String(), met: d <= goal, rss: rss}
}

// ratioRow is a row comparing sendfs's time with the reference's.
func ratioRow(what string, d, ref time.Duration, goal float64, rss int64) tableRow {
	r := ref.Seconds() / d.Seconds()
	return tableRow{what: what, sendfs: fmtDur(d), ref: fmtDur(ref), ratio: r, goal: fmt.Sprintf("≥ %g×", goal), met: r >= goal, rss: rss}
}

func fmtDur(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

const tableRuns = 3

// freshMount mounts the corpus with the sizes computed before, as a second
// mount would, and waits until it has loaded them: its page cache is empty
// and no stream has an index.
func (c *tableCorpus) freshMount(b *testing.B) *sendfsMount {
	m := startMount(b, c.fs.Images, "--cache-dir", c.cacheDir)
	if m.waitLog(b, "stream sizes ready", 10*time.Minute) == "" {
		b.Fatalf("sizes not loaded in 10 minutes\n%s", m.stderr)
	}
	return m
}

// coldMount mounts the corpus with an empty size cache and returns at once.
func (c *tableCorpus) coldMount(b *testing.B) *sendfsMount {
	return startMount(b, c.fs.Images, "--cache-dir", b.TempDir())
}

// onMounts runs measure on a new mount (from mount) tableRuns times,
// unmounting after each, and returns the best time and the mounts' peak
// RSS.
func onMounts(b *testing.B, mount func(*testing.B) *sendfsMount, measure func(*sendfsMount) time.Duration) (time.Duration, int64) {
	var rss int64
	d := best(tableRuns, func() time.Duration {
		m := mount(b)
		d := measure(m)
		rss = max(rss, peakRSS(b, m))
		unmountFUSE(b, m)
		return d
	})
	return d, rss
}

func (c *tableCorpus) catRow(b *testing.B) tableRow {
	cli, cliRSS := bestRun(b, "sh", "-c", `"$@" | cat`, "sh", c.sendfs, "send", "-q", c.fs.Images[0], c.full)
	fuse, rss := onMounts(b, c.freshMount, func(m *sendfsMount) time.Duration {
		d, _, _ := runRSS(b, "cat", m.streamPath(c.full, ""))
		return d
	})
	row := ratioRow("`cat full.stream` from a fresh mount, against `sendfs send \\| cat`", fuse, cli, 0.9, rss)
	row.ref += fmt.Sprintf(" (%d MiB)", cliRSS>>10)
	return row
}

func (c *tableCorpus) rcloneRow(b *testing.B) tableRow {
	dst := b.TempDir()
	file := filepath.Join(dst, "full.stream")
	cli, cliRSS := bestRun(b, c.sendfs, "send", "-q", "-f", file, c.fs.Images[0], c.full)
	must(b, os.Remove(file))
	fuse, rss := onMounts(b, c.freshMount, func(m *sendfsMount) time.Duration {
		// Transfer only: rclone's md5 of both copies afterwards would
		// read the stream again.
		d, _, stderr := runRSS(b, "rclone", "copy", "-v", "--ignore-checksum",
			"--multi-thread-streams", "4", "--multi-thread-cutoff", "1M", m.streamPath(c.full, ""), dst)
		if !strings.Contains(stderr, "Multi-thread Copied") {
			b.Fatalf("rclone did not copy with multi-thread streams:\n%s", stderr)
		}
		st, err := os.Stat(file)
		must(b, err)
		if st.Size() != c.size {
			b.Fatalf("rclone copied %d bytes of a %d-byte stream", st.Size(), c.size)
		}
		must(b, os.Remove(file))
		return d
	})
	row := ratioRow("`rclone copy --multi-thread-streams 4` from a fresh mount, against `sendfs send -f`", fuse, cli, 0.9, rss)
	row.ref += fmt.Sprintf(" (%d MiB)", cliRSS>>10)
	return row
}

// firstByteRow reads 4 KiB at 1.5 GB into the 2.6 GB stream (the same
// fraction of a smaller one), the open included.
func (c *tableCorpus) firstByteRow(b *testing.B) tableRow {
	off := c.size * 15 / 26 &^ 4095
	d, rss := onMounts(b, c.freshMount, func(m *sendfsMount) time.Duration {
		buf := make([]byte, 4096)
		t0 := time.Now()
		f, err := os.Open(m.streamPath(c.full, ""))
		must(b, err)
		defer f.Close()
		if _, err := f.ReadAt(buf, off); err != nil {
			b.Fatalf("read at %d: %v", off, err)
		}
		return time.Since(t0)
	})
	return timeRow(fmt.Sprintf("first byte of a read at %.2f GB into the stream, fresh mount", float64(off)/1e9), d, 500*time.Millisecond, rss)
}

// coldStatRow stats the full stream on a mount with an empty size cache,
// right after mounting (the mount's background sizing runs meanwhile).
func (c *tableCorpus) coldStatRow(b *testing.B) tableRow {
	d, rss := onMounts(b, c.coldMount, func(m *sendfsMount) time.Duration {
		t0 := time.Now()
		st, err := os.Stat(m.streamPath(c.full, ""))
		d := time.Since(t0)
		must(b, err)
		if st.Size() != c.size {
			b.Fatalf("stat: %d bytes, the stream has %d", st.Size(), c.size)
		}
		return d
	})
	return timeRow("`stat` (exact size) of that stream on a cold mount, no size cache", d, time.Second, rss)
}

func (c *tableCorpus) coldListRow(b *testing.B) tableRow {
	d, rss := onMounts(b, c.coldMount, func(m *sendfsMount) time.Duration {
		from := filepath.Dir(m.streamPath(c.last, "snaps/m.000"))
		d, _, _ := runRSS(b, "ls", "-l", from)
		ents, err := os.ReadDir(from)
		must(b, err)
		if len(ents) != 100 {
			b.Fatalf("from/ lists %d parents, want 100", len(ents))
		}
		return d
	})
	return timeRow("`ls -l` of a `from/` with 100 parents on a cold mount", d, 300*time.Millisecond, rss)
}

// readersRow reads the full streams of 8 snapshots at once with cat, on
// tableRuns fresh mounts: the peak is the highest of the runs, all of them
// shown, and the time the best.
func (c *tableCorpus) readersRow(b *testing.B) tableRow {
	var peaks []string
	d, rss := onMounts(b, c.freshMount, func(m *sendfsMount) time.Duration {
		d := c.catAll(b, m)
		peaks = append(peaks, fmt.Sprint(peakRSS(b, m)>>10))
		return d
	})
	return tableRow{
		what:   fmt.Sprintf("peak RSS with %d concurrent readers of different streams", len(c.readers)),
		sendfs: fmt.Sprintf("%d MiB", rss>>10),
		ref:    fmt.Sprintf("(%d × %.2f GB in %s; peaks %s MiB)", len(c.readers), float64(c.size)/1e9, fmtDur(d), strings.Join(peaks, ", ")),
		goal:   "≤ 256 MiB", met: rss <= 256<<10, rss: rss,
	}
}

// catAll reads the full streams of the readers at once with cat from m.
func (c *tableCorpus) catAll(b *testing.B, m *sendfsMount) time.Duration {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	must(b, err)
	defer null.Close()
	var wg sync.WaitGroup
	errs := make([]error, len(c.readers))
	t0 := time.Now()
	for i, snap := range c.readers {
		wg.Go(func() {
			cmd := exec.Command("cat", m.streamPath(snap, ""))
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = null, &stderr
			if err := cmd.Run(); err != nil {
				errs[i] = fmt.Errorf("cat %s: %v: %s", snap, err, stderr.String())
			}
		})
	}
	wg.Wait()
	d := time.Since(t0)
	for _, err := range errs {
		must(b, err)
	}
	return d
}

// kernelRows are the rows against the kernel's btrfs send: on the image
// file with the page cache warm (full and incremental), then on the loop
// device made read-only, its page cache dropped before every run, the
// kernel's on a fresh mount of it.
func (c *tableCorpus) kernelRows(b *testing.B) []tableRow {
	img := c.fs.Images[0]
	kFull, _ := bestRun(b, "btrfs", "send", "-q", c.fs.path(c.full))
	sFull, rssFull := bestRun(b, c.sendfs, "send", "-q", img, c.full)
	kInc, _ := bestRun(b, "btrfs", "send", "-q", "-p", c.fs.path(c.full), c.fs.path(c.child))
	sInc, rssInc := bestRun(b, c.sendfs, "send", "-q", "-p", c.full, img, c.child)

	dev := c.fs.Loops[0]
	unmount(b, c.fs)
	run(b, "blockdev", "--setro", dev)
	defer run(b, "blockdev", "--setrw", dev)
	kDev, sDev, rssDev := deviceSendTimes(b, c.fs, c.sendfs, tableRuns, c.full, "")
	return []tableRow{
		ratioRow("`sendfs send` of a read-only loop block device (cache dropped), against `btrfs send` on a fresh mount of it", sDev, kDev, 3, rssDev),
		ratioRow("`sendfs send` of the image file, against `btrfs send` (page cache warm)", sFull, kFull, 6, rssFull),
		ratioRow("incremental `sendfs send -p` of the image file, against `btrfs send -p`", sInc, kInc, 1, rssInc),
	}
}

func (c *tableCorpus) printTable(rows []tableRow) {
	var mem int64
	if out, err := os.ReadFile("/proc/meminfo"); err == nil {
		fmt.Sscanf(string(out), "MemTotal: %d kB", &mem)
	}
	kernel, _ := runErr("uname", "-r")
	fmt.Printf("\nIssue 13's table: %s, %d CPUs, %.0f GiB RAM, kernel %s, %s\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), float64(mem)/(1<<20), strings.TrimSpace(kernel), runtime.Version())
	fmt.Printf("Corpus (built in %s): %d big files of %d MiB and %d small files of up to 8000 bytes; full stream %.2f GB; %d snapshots of it; a lineage of 101 small snapshots. Best of %d, page cache warm unless said.\n\n",
		c.built.Round(time.Second), 4, 512/c.scale, c.nfiles, float64(c.size)/1e9, len(c.readers), tableRuns)
	fmt.Println("| what | sendfs | reference | ratio | goal | met | sendfs peak RSS |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, r := range rows {
		ratio, met := "", "no"
		if r.ratio != 0 {
			ratio = fmt.Sprintf("%.2f×", r.ratio)
		}
		if r.met {
			met = "yes"
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %d MiB |\n", r.what, r.sendfs, r.ref, ratio, r.goal, met, r.rss>>10)
	}
}

// runRSS runs a command once under GNU time, stdout to /dev/null, and
// returns its wall time, its peak RSS (KiB) and its stderr. GNU time
// forks: a child that Go starts itself (vfork) would inherit the test
// binary's peak RSS in its rusage.
func runRSS(b testing.TB, name string, args ...string) (time.Duration, int64, string) {
	b.Helper()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	must(b, err)
	defer null.Close()
	rssFile, err := os.CreateTemp("", "sendfs-rss-")
	must(b, err)
	rssFile.Close()
	defer os.Remove(rssFile.Name())
	var stderr bytes.Buffer
	cmd, cancel := command("/usr/bin/time", append([]string{"-f", "%M", "-o", rssFile.Name(), name}, args...)...)
	defer cancel()
	cmd.Stdout, cmd.Stderr = null, &stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, lastLines(stderr.String(), 20))
	}
	d := time.Since(t0)
	out, err := os.ReadFile(rssFile.Name())
	must(b, err)
	var kib int64
	if _, err := fmt.Sscan(string(out), &kib); err != nil {
		b.Fatalf("GNU time wrote %q: %v", out, err)
	}
	return d, kib, stderr.String()
}

// peakRSS is the peak RSS (KiB) of the mount's process so far.
func peakRSS(b testing.TB, m *sendfsMount) int64 {
	out, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	must(b, err)
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			must(b, err)
			return kib
		}
	}
	b.Fatalf("no VmHWM in /proc/%d/status", m.cmd.Process.Pid)
	return 0
}
