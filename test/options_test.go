package test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"sendfs/btrfsread"
)

// sendArgsTo runs `btrfs send -q -f FILE args...` (the kernel) or `sendfs
// send -q -f FILE args...` and returns the stream.
func sendArgsTo(t *testing.T, kernel bool, args ...string) []byte {
	t.Helper()
	f := filepath.Join(t.TempDir(), "stream")
	if kernel {
		run(t, "btrfs", append([]string{"send", "-q", "-f", f}, args...)...)
	} else {
		run(t, sendfsBinary(t), append([]string{"send", "-q", "-f", f}, args...)...)
	}
	b, err := os.ReadFile(f)
	must(t, err)
	return b
}

// receiveInto receives the streams, in order, into dir (made if needed).
func receiveInto(t *testing.T, dir string, streams ...[]byte) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	for _, s := range streams {
		f := filepath.Join(t.TempDir(), "in.stream")
		must(t, os.WriteFile(f, s, 0o600))
		run(t, "btrfs", "receive", "-f", f, dir)
	}
}

// writeLen matches the data commands that carry bytes in a dump.
var writeLen = regexp.MustCompile(`^(write|encoded_write) .* len=(\d+)`)

// writtenBytes is how many file bytes a stream writes (not clones).
func writtenBytes(lines []string) int64 {
	var n int64
	for _, l := range normalizeDump(lines) {
		if m := writeLen.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseInt(m[2], 10, 64)
			n += v
		}
	}
	return n
}

// TestCloneSources: streams with -c (reflinks to files of other snapshots,
// dedupe across snapshots, several -c, -c without -p, several subvolumes)
// are the kernel's: same dump but for clone sources of the same bytes, no
// more data written, and receive rebuilds every snapshot sent.
func TestCloneSources(t *testing.T) {
	bfs := newFS(t, fsOpts{Size: 2 << 30})
	subvolCreate(t, bfs, "vol")
	subvolCreate(t, bfs, "other")
	p := bfs.path
	writeFile(t, p("other/x"), random(1<<20, 1))
	writeFile(t, p("other/y"), random(512<<10, 2))
	writeFile(t, p("vol/a"), random(1<<20, 3))
	snapshotRO(t, bfs, "other", "snaps/o1")
	snapshotRO(t, bfs, "vol", "snaps/s1")
	reflink(t, p("snaps/o1/x"), p("vol/from-o1"), 0, 0, 0)
	reflink(t, p("snaps/s1/a"), p("vol/from-s1"), 128<<10, 256<<10, 64<<10)
	writeFile(t, p("vol/dup"), random(512<<10, 2)) // other/y's bytes, deduped below
	run(t, "xfs_io", "-c", "dedupe "+p("snaps/o1/y")+" 0 0 524288", p("vol/dup"))
	writeFile(t, p("vol/new"), random(100<<10, 4))
	snapshotRO(t, bfs, "vol", "snaps/s2")
	reflink(t, p("snaps/s2/from-o1"), p("vol/again"), 0, 0, 0)
	writeFile(t, p("vol/more"), random(64<<10, 5))
	snapshotRO(t, bfs, "vol", "snaps/s3")
	remountRO(t, bfs)

	kfull := map[string][]byte{}
	for _, s := range []string{"o1", "s1", "s2"} {
		kfull[s] = kernelSend(t, bfs.Mnt, p("snaps/"+s), "")
	}
	r := newReceiver(t)
	for _, tc := range []struct {
		name string
		opts []string // "@name" stands for snapshot snaps/name
		send []string // snapshots sent, in order
		base []string // snapshots the receiver has
	}{
		{"c-and-p", []string{"-c", "@o1", "-p", "@s1"}, []string{"s2"}, []string{"o1", "s1"}},
		{"several-c", []string{"-c", "@o1", "-c", "@s1"}, []string{"s2"}, []string{"o1", "s1"}},
		{"c-without-p", []string{"-c", "@o1", "-c", "@s2"}, []string{"s3"}, []string{"o1", "s2"}},
		{"several-subvolumes", []string{"-c", "@o1", "-c", "@s1"}, []string{"s2", "s3"}, []string{"o1", "s1"}},
		{"several-subvolumes-e", []string{"-e", "-c", "@s1"}, []string{"s2", "s3"}, []string{"s1"}},
		{"several-full", nil, []string{"s1", "s2"}, nil},
		{"compressed-several", []string{"--compressed-data", "-p", "@s1"}, []string{"s2", "s3"}, []string{"s1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := func(name func(string) string) []string {
				var a []string
				for _, o := range tc.opts {
					if strings.HasPrefix(o, "@") {
						o = name(o[1:])
					}
					a = append(a, o)
				}
				return a
			}
			kargs := args(func(s string) string { return p("snaps/" + s) })
			oargs := append(args(func(s string) string { return "snaps/" + s }), bfs.Images...)
			for _, s := range tc.send {
				kargs = append(kargs, p("snaps/"+s))
				oargs = append(oargs, "snaps/"+s)
			}
			kernel, ours := sendArgsTo(t, true, kargs...), sendArgsTo(t, false, oargs...)
			kdump, odump := dump(t, kernel), dump(t, ours)
			if d := diffDumps(kdump, odump); d != nil {
				if !sameDataDifferentSources(kdump, odump) {
					t.Errorf("dump differs from the kernel's:\n%s", strings.Join(d, "\n"))
				} else {
					t.Logf("dump differs from the kernel's only in clone sources (same data):\n%s", strings.Join(d, "\n"))
				}
			}
			if kw, ow := writtenBytes(kdump), writtenBytes(odump); ow > kw {
				t.Errorf("our stream writes %d bytes, the kernel's %d", ow, kw)
			}
			var base [][]byte
			for _, s := range tc.base {
				base = append(base, kfull[s])
			}
			dir := r.fs.path("c-" + tc.name)
			receiveInto(t, dir, append(base, ours)...)
			for _, s := range tc.send {
				compareTrees(t, p("snaps/"+s), filepath.Join(dir, s))
			}
		})
	}
	t.Run("no parent among the clone sources", func(t *testing.T) {
		if _, err := runErr("btrfs", "send", "-q", "-f", "/dev/null", "-c", p("snaps/o1"), p("snaps/s3")); err == nil {
			t.Fatal("the kernel's btrfs send -c o1 s3 succeeded; the test expects it to find no parent")
		}
		sendfsRun(t, "send", "--size", "-c", "snaps/o1", bfs.Images[0], "snaps/s3").
			wantFailure(t, 1, "cannot choose a parent for snaps/s3 among the clone sources: none is vol or another snapshot of it")
	})
}

// TestNoDataAndSelf: --no-data streams (protocol 1 and 2, full and
// incremental) and a snapshot sent against itself have the kernel's bytes.
func TestNoDataAndSelf(t *testing.T) {
	bfs := newFS(t, fsOpts{Size: 1 << 30})
	subvolCreate(t, bfs, "vol")
	p := bfs.path
	baseTree(t, p("vol"))
	snapshotRO(t, bfs, "vol", "snaps/s1")
	writeAt(t, p("vol/big"), 100000, random(200000, 7))
	punchHole(t, p("vol/big"), 512<<10, 128<<10)
	mustTruncate(t, p("vol/sparse"), 10<<20)
	writeFile(t, p("vol/a/new"), random(300<<10, 8))
	reflink(t, p("vol/big"), p("vol/a/clone"), 0, 0, 0)
	snapshotRO(t, bfs, "vol", "snaps/s2")
	remountRO(t, bfs)
	for _, tc := range []struct {
		name           string
		opts           []string
		subvol, parent string
	}{
		{"no-data-full", []string{"--no-data"}, "s2", ""},
		{"no-data", []string{"--no-data"}, "s2", "s1"},
		{"no-data-proto2", []string{"--no-data", "--proto", "2"}, "s2", "s1"},
		{"self", nil, "s1", "s1"},
		{"self-compressed", []string{"--compressed-data"}, "s2", "s2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kparent := ""
			var parent string
			if tc.parent != "" {
				kparent, parent = p("snaps/"+tc.parent), "snaps/"+tc.parent
			}
			kernel := kernelSend(t, bfs.Mnt, p("snaps/"+tc.subvol), kparent, tc.opts...)
			ours := sendfsSend(t, bfs.Images, "snaps/"+tc.subvol, parent, tc.opts...)
			if d := diffDumps(dump(t, kernel), dump(t, ours)); d != nil {
				t.Errorf("dump differs from the kernel's:\n%s", strings.Join(d, "\n"))
			}
			if n, err := sendfsSize(t, bfs.Images, "snaps/"+tc.subvol, parent, tc.opts...); err != nil || n != int64(len(ours)) {
				t.Errorf("--size: %d, %v; the stream has %d bytes", n, err, len(ours))
			}
		})
	}
}

// TestCompressedDataStaysCompressed: a --compressed-data stream of data
// compressed with zstd, received on a filesystem mounted without
// compression, leaves the data compressed on the receiving side exactly as
// the kernel's stream does (a protocol-1 stream leaves it uncompressed).
func TestCompressedDataStaysCompressed(t *testing.T) {
	bfs := newFS(t, fsOpts{Size: 1 << 30, MountOpts: "compress=zstd"})
	subvolCreate(t, bfs, "vol")
	p := bfs.path
	writeFile(t, p("vol/big"), textLines(8<<20, 1))
	writeFile(t, p("vol/inline"), textLines(2000, 2))
	writeFile(t, p("vol/random"), random(1<<20, 3))
	writeAt(t, p("vol/sparse"), 4<<20, textLines(1<<20, 4))
	writeFile(t, p("vol/partial"), textLines(1<<20, 5))
	writeAt(t, p("vol/partial"), 300000, random(5000, 6)) // an extent partly overwritten
	snapshotRO(t, bfs, "vol", "snaps/s1")
	snap := p("snaps/s1")
	kernel := kernelSend(t, bfs.Mnt, snap, "", "--compressed-data")
	plain := kernelSend(t, bfs.Mnt, snap, "")
	remountRO(t, bfs)
	ours := sendfsSend(t, bfs.Images, "snaps/s1", "", "--compressed-data")
	if len(ours) > len(kernel)+len(kernel)/100 {
		t.Errorf("our stream has %d bytes, the kernel's %d", len(ours), len(kernel))
	}
	r := newReceiver(t)
	got := map[string]string{"kernel": r.receive(t, kernel), "sendfs": r.receive(t, ours), "protocol 1": r.receive(t, plain)}
	compareTrees(t, snap, got["sendfs"])
	syncFS(t, r.fs)
	stored := map[string][2]uint64{}
	for who, dir := range got {
		stored[who] = compressedExtents(t, r.fs, dir)
		t.Logf("%s stream (%d bytes): %d file bytes in compressed extents taking %d bytes on disk", who, map[string]int{"kernel": len(kernel), "sendfs": len(ours), "protocol 1": len(plain)}[who], stored[who][0], stored[who][1])
	}
	if stored["sendfs"] != stored["kernel"] || stored["sendfs"][0] == 0 {
		t.Errorf("received data stays compressed differently: ours %v, kernel's %v (file bytes, disk bytes)", stored["sendfs"], stored["kernel"])
	}
	if stored["protocol 1"][0] != 0 {
		t.Errorf("the receiver compresses data itself (%v): the test shows nothing", stored["protocol 1"])
	}
}

// compressedExtents reads the received subvolume at dir (inside fs, synced)
// through btrfsread and sums the file bytes its regular files have in
// compressed extents and the disk bytes of those extents.
func compressedExtents(t *testing.T, bfs *btrfsFS, dir string) [2]uint64 {
	t.Helper()
	rfs, err := btrfsread.Open(bfs.Images...)
	must(t, err)
	defer rfs.Close()
	rel, err := filepath.Rel(bfs.Mnt, dir)
	must(t, err)
	sv, err := rfs.FindSubvolume(rel)
	must(t, err)
	var sum [2]uint64
	seen := map[uint64]bool{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			return err
		}
		return sv.Extents(st.Ino, 0, func(_ uint64, fe *btrfsread.FileExtent) error {
			if fe.Compression == btrfsread.CompressNone {
				return nil
			}
			sum[0] += fe.Len()
			if fe.Type == btrfsread.ExtentInline {
				sum[1] += uint64(len(fe.Inline))
			} else if !seen[fe.DiskBytenr] {
				seen[fe.DiskBytenr] = true
				sum[1] += fe.DiskNumBytes
			}
			return nil
		})
	})
	must(t, err)
	return sum
}
