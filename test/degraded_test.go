package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Degraded arrays: streams sent with member devices missing (--degraded),
// or with a member that fails reads on a range, must be the streams of the
// complete array, byte for byte.

// fillDegradedVolume writes a subvolume whose data spans every stripe of
// an array: big random files (several stripes and rows), a zstd-compressed
// one, small inline files and a hole; it takes snapshot snaps/s1, changes
// files and takes snaps/s2.
func fillDegradedVolume(t *testing.T, fs *btrfsFS) {
	t.Helper()
	subvolCreate(t, fs, "vol")
	writeFile(t, fs.path("vol/big"), random(5<<20+1234, 1))
	writeFile(t, fs.path("vol/mid"), random(300000, 2))
	must(t, os.Mkdir(fs.path("vol/z"), 0o755))
	run(t, "btrfs", "property", "set", fs.path("vol/z"), "compression", "zstd")
	writeFile(t, fs.path("vol/z/text"), bytes.Repeat([]byte("degraded arrays keep their data\n"), 40000))
	must(t, os.Mkdir(fs.path("vol/small"), 0o755))
	for i := range 50 {
		writeFile(t, fs.path(fmt.Sprintf("vol/small/%d", i)), random(100+i*20, uint64(i)))
	}
	f, err := os.OpenFile(fs.path("vol/sparse"), os.O_CREATE|os.O_WRONLY, 0o644)
	must(t, err)
	_, err = f.WriteAt(random(70000, 3), 3<<20)
	must(t, err)
	must(t, f.Close())
	snapshotRO(t, fs, "vol", "snaps/s1")
	writeFile(t, fs.path("vol/mid"), random(400000, 4))
	must(t, os.Remove(fs.path("vol/small/7")))
	snapshotRO(t, fs, "vol", "snaps/s2")
}

// without returns images without the ones at the indexes drop.
func without(images []string, drop ...int) []string {
	var out []string
	for i, img := range images {
		if !slices.Contains(drop, i) {
			out = append(out, img)
		}
	}
	return out
}

// TestDegraded sends full and incremental streams from arrays with members
// missing, as many as each profile survives: each stream equals the one of
// the complete array and is received intact; without --degraded the error
// names the flag.
func TestDegraded(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		profile string
		devs    int
		missing []int // image indexes
	}{
		{"raid1", 2, []int{1}},
		{"raid10", 4, []int{2}},
		{"raid1c3", 3, []int{0, 2}},
		{"raid5", 3, []int{1}},
		{"raid6", 4, []int{0, 3}},
		{"raid6", 4, []int{1, 2}},
	} {
		t.Run(fmt.Sprintf("%s-without-%v", c.profile, c.missing), func(t *testing.T) {
			fs := newFS(t, fsOpts{Devices: c.devs, Size: 1 << 30, MkfsArgs: []string{"-d", c.profile, "-m", c.profile}})
			fillDegradedVolume(t, fs)
			unmount(t, fs)
			full := sendfsSend(t, fs.Images, "snaps/s1", "")
			incr := sendfsSend(t, fs.Images, "snaps/s2", "snaps/s1")

			present := without(fs.Images, c.missing...)
			out := filepath.Join(t.TempDir(), "out")
			sendfsRun(t, "send", "-q", "-f", out, present[0], "snaps/s1").
				wantFailure(t, 1, "was not given", "--degraded")

			// One member is enough with --scan: the others lie beside it
			// (and on the loop devices).
			r := sendfsRun(t, "send", "-q", "--scan", "-f", out, present[0], "snaps/s1")
			if b, err := os.ReadFile(out); r.code != 0 || err != nil || !bytes.Equal(b, full) {
				t.Errorf("send --scan %s: exit %d, stream equal: %v\n%s", present[0], r.code, bytes.Equal(b, full), r.stderr)
			}

			gotFull := degradedSend(t, present, "snaps/s1", "")
			gotIncr := degradedSend(t, present, "snaps/s2", "snaps/s1")
			if !bytes.Equal(gotFull, full) || !bytes.Equal(gotIncr, incr) {
				t.Fatalf("degraded streams differ from the complete array's (full %d/%d bytes, incremental %d/%d)",
					len(gotFull), len(full), len(gotIncr), len(incr))
			}
			r = sendfsRun(t, append([]string{"list", "--degraded"}, present...)...)
			if r.code != 0 || !strings.Contains(r.stdout, "snaps/s2") {
				t.Errorf("list --degraded: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}

			if c.profile == "raid6" {
				// The mount serves the same streams.
				m := startMount(t, present, "--degraded", "--cache-dir", t.TempDir())
				sameBytes(t, "full.stream on the degraded mount", full, readFile(t, m.streamPath("snaps/s1", "")))
				sameBytes(t, "incremental stream on the degraded mount", incr, readFile(t, m.streamPath("snaps/s2", "snaps/s1")))
			}
			got := receive(t, gotFull, gotIncr)
			remountRO(t, fs)
			compareTrees(t, fs.path("snaps/s2"), got)
		})
	}
}

// degradedSend runs sendfs send --degraded and checks that stderr names the
// missing members.
func degradedSend(t *testing.T, images []string, subvol, parent string) []byte {
	t.Helper()
	f := filepath.Join(t.TempDir(), "degraded.stream")
	args := []string{"send", "-q", "--degraded", "-f", f}
	if parent != "" {
		args = append(args, "-p", parent)
	}
	r := sendfsRun(t, append(append(args, images...), subvol)...)
	if r.code != 0 {
		t.Fatalf("sendfs %s: exit %d\n%s", strings.Join(r.args, " "), r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "member devices missing") {
		t.Errorf("sendfs %s: no warning about the missing members on stderr:\n%s", strings.Join(r.args, " "), r.stderr)
	}
	b, err := os.ReadFile(f)
	must(t, err)
	return b
}

// TestDegradedUnreadable: a raid0 array with a member missing (metadata
// raid1) still lists, sends the subvolume whose files are all inline, and
// fails the one with data on the missing member, naming the subvolume,
// inode, file offset and the missing devid.
func TestDegradedUnreadable(t *testing.T) {
	requireRoot(t)
	fs := newFS(t, fsOpts{Devices: 2, Size: 1 << 30, MkfsArgs: []string{"-d", "raid0", "-m", "raid1"}})
	subvolCreate(t, fs, "inline")
	for i := range 20 {
		writeFile(t, fs.path(fmt.Sprintf("inline/f%d", i)), random(200+i, uint64(i)))
	}
	subvolCreate(t, fs, "big")
	writeFile(t, fs.path("big/data"), random(4<<20, 9))
	snapshotRO(t, fs, "inline", "snaps/inline")
	snapshotRO(t, fs, "big", "snaps/big")
	unmount(t, fs)
	want := sendfsSend(t, fs.Images, "snaps/inline", "")

	r := sendfsRun(t, "list", "--degraded", fs.Images[0])
	if r.code != 0 || !strings.Contains(r.stdout, "snaps/big") {
		t.Fatalf("list --degraded: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "raid0 data") {
		t.Errorf("list --degraded does not warn that raid0 data chunks are lost:\n%s", r.stderr)
	}
	if got := degradedSend(t, fs.Images[:1], "snaps/inline", ""); !bytes.Equal(got, want) {
		t.Error("the inline-only snapshot's degraded stream differs from the complete array's")
	}
	out := filepath.Join(t.TempDir(), "big.stream")
	r = sendfsRun(t, "send", "-q", "--degraded", "-f", out, fs.Images[0], "snaps/big")
	line := lastLine(r.stderr)
	r.stderr = line + "\n"
	r.wantFailure(t, 1, "subvolume 259 inode 257 file offset ", "missing device devid 2", "raid0 data")
	if exists(out) {
		t.Error("a failed degraded send left its FILE")
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestReadErrorsReadAround sends from a raid1 array whose first member, a
// loop device, fails every read past 64 MiB with EIO (only its first
// superblock copy stays readable): the stream equals the complete array's,
// and the log names the failing device and range. The same with raid5,
// where the range is rebuilt from parity.
func TestReadErrorsReadAround(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		profile string
		devs    int
	}{{"raid1", 2}, {"raid5", 3}} {
		t.Run(c.profile, func(t *testing.T) {
			const size = 1 << 30
			fs := newFS(t, fsOpts{Devices: c.devs, Size: size, MkfsArgs: []string{"-d", c.profile, "-m", c.profile}})
			fillDegradedVolume(t, fs)
			unmount(t, fs)
			want := sendfsSend(t, fs.Images, "snaps/s2", "")

			bad := failingDevice(t, fs.Images[0], 64<<20, size)
			devs := append([]string{bad}, fs.Loops[1:]...)
			f := filepath.Join(t.TempDir(), "stream")
			r := sendfsRun(t, append(append([]string{"send", "-q", "-f", f}, devs...), "snaps/s2")...)
			if r.code != 0 {
				t.Fatalf("send with a failing member: exit %d\n%s", r.code, r.stderr)
			}
			got, err := os.ReadFile(f)
			must(t, err)
			if !bytes.Equal(got, want) {
				t.Errorf("stream read around the failing range differs from the complete array's (%d/%d bytes)", len(got), len(want))
			}
			if !strings.Contains(r.stderr, "read error") || !strings.Contains(r.stderr, "device="+bad) || !strings.Contains(r.stderr, "range=") {
				t.Errorf("the log does not name the failing device and range:\n%s", lastLines(r.stderr, 10))
			}
			t.Log(lastLines(r.stderr, 3))
		})
	}
}
