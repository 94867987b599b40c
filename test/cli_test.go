package test

// End-to-end tests of the sendfs command line: `sendfs list` against
// `btrfs subvolume list`, and every user error a send can meet, each with
// its one-line message and exit status.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cliResult is what one run of the sendfs binary produced.
type cliResult struct {
	args   []string
	stdout string
	stderr string
	code   int
}

// sendfsRun runs the sendfs binary with args (stdout not a terminal).
func sendfsRun(t testing.TB, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(sendfsBinary(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("sendfs %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// wantFailure checks that r failed with exit status code and one line on
// stderr, prefixed "sendfs: ", containing every one of want.
func (r cliResult) wantFailure(t testing.TB, code int, want ...string) {
	t.Helper()
	line := strings.TrimSuffix(r.stderr, "\n")
	switch {
	case r.code != code:
		t.Errorf("sendfs %s: exit status %d, want %d; stderr:\n%s", strings.Join(r.args, " "), r.code, code, r.stderr)
	case !strings.HasPrefix(line, "sendfs: ") || strings.Contains(line, "\n"):
		t.Errorf("sendfs %s: want one line starting with \"sendfs: \" on stderr, got:\n%s", strings.Join(r.args, " "), r.stderr)
	case strings.Contains(line, "internal error") || strings.Contains(line, "panic"):
		t.Errorf("sendfs %s: a bug reached the user: %s", strings.Join(r.args, " "), line)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("sendfs %s: message %q does not contain %q", strings.Join(r.args, " "), line, w)
		}
	}
}

// listed is one subvolume as both listings describe it; uuids are "" when
// unset.
type listed struct {
	ID, TopLevel, Gen, OGen uint64
	UUID, ParentUUID, Recv  string
	ReadOnly                bool
	Path                    string
}

var kernelListLine = regexp.MustCompile(`^ID (\d+) gen (\d+) cgen (\d+) top level (\d+) parent_uuid (\S+)\s+received_uuid (\S+)\s+uuid (\S+) path (.*)$`)

// kernelList is `btrfs subvolume list -a -c -u -q -R` of the filesystem
// mounted at mnt, with the read-only flag from `btrfs subvolume show`.
func kernelList(t *testing.T, mnt string) []listed {
	t.Helper()
	var subvols []listed
	for _, line := range strings.Split(strings.TrimSpace(run(t, "btrfs", "subvolume", "list", "-a", "-c", "-u", "-q", "-R", mnt)), "\n") {
		m := kernelListLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("cannot parse btrfs subvolume list line %q", line)
		}
		num := func(s string) uint64 {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		uuidOrEmpty := func(s string) string { return strings.TrimPrefix(s, "-") }
		sv := listed{
			ID: num(m[1]), Gen: num(m[2]), OGen: num(m[3]), TopLevel: num(m[4]),
			ParentUUID: uuidOrEmpty(m[5]), Recv: uuidOrEmpty(m[6]), UUID: uuidOrEmpty(m[7]),
			Path: strings.TrimPrefix(m[8], "<FS_TREE>/"),
		}
		show := run(t, "btrfs", "subvolume", "show", filepath.Join(mnt, sv.Path))
		sv.ReadOnly = regexp.MustCompile(`(?m)^\s*Flags:\s*readonly`).MatchString(show)
		subvols = append(subvols, sv)
	}
	sort.Slice(subvols, func(i, j int) bool { return subvols[i].ID < subvols[j].ID })
	return subvols
}

// listJSON is one object of `sendfs list --json`.
type listJSON struct {
	ID           uint64  `json:"id"`
	ParentID     uint64  `json:"parent_id"`
	Path         string  `json:"path"`
	ReadOnly     bool    `json:"read_only"`
	Generation   uint64  `json:"generation"`
	CTransid     uint64  `json:"ctransid"`
	OTransid     uint64  `json:"otransid"`
	Created      *string `json:"created"`
	UUID         *string `json:"uuid"`
	ParentUUID   *string `json:"parent_uuid"`
	ReceivedUUID *string `json:"received_uuid"`
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// sendfsListJSON runs `sendfs list --json` and checks each object's own
// consistency (times, transids) on the way.
func sendfsListJSON(t *testing.T, images []string) []listed {
	t.Helper()
	r := sendfsRun(t, append([]string{"list", "--json"}, images...)...)
	if r.code != 0 {
		t.Fatalf("sendfs list --json: exit %d: %s", r.code, r.stderr)
	}
	var objs []listJSON
	if err := json.Unmarshal([]byte(r.stdout), &objs); err != nil {
		t.Fatalf("sendfs list --json: %v\n%s", err, r.stdout)
	}
	var out []listed
	for _, o := range objs {
		if o.Created == nil {
			t.Errorf("subvolume %d has no creation time", o.ID)
		} else if c, err := time.Parse(time.RFC3339Nano, *o.Created); err != nil || time.Since(c) > time.Hour || time.Since(c) < 0 {
			t.Errorf("subvolume %d: created %q is not a recent RFC 3339 time (%v)", o.ID, *o.Created, err)
		}
		if o.CTransid > o.Generation || o.OTransid > o.Generation {
			t.Errorf("subvolume %d: ctransid %d / otransid %d above generation %d", o.ID, o.CTransid, o.OTransid, o.Generation)
		}
		out = append(out, listed{
			ID: o.ID, TopLevel: o.ParentID, Gen: o.Generation, OGen: o.OTransid,
			UUID: deref(o.UUID), ParentUUID: deref(o.ParentUUID), Recv: deref(o.ReceivedUUID),
			ReadOnly: o.ReadOnly, Path: o.Path,
		})
	}
	return out
}

// sendfsListText runs `sendfs list` and reads the table back by the
// header's column offsets. Parent and received uuids are short (8 digits).
func sendfsListText(t *testing.T, images []string) []listed {
	t.Helper()
	r := sendfsRun(t, append([]string{"list"}, images...)...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("sendfs list: exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	header := lines[0]
	names := []string{"ID", "TOP", "GEN", "CTRANSID", "CREATED", "RO", "UUID", "PARENT UUID", "RECEIVED UUID", "PATH"}
	var starts []int
	for _, n := range names {
		i := strings.Index(header, n+" ")
		if n == "PATH" {
			i = strings.LastIndex(header, n)
		}
		if i < 0 {
			t.Fatalf("sendfs list header %q lacks %s", header, n)
		}
		starts = append(starts, i)
	}
	var out []listed
	for _, line := range lines[1:] {
		cell := func(i int) string {
			end := len(line)
			if i+1 < len(starts) {
				end = starts[i+1]
			}
			return strings.TrimSpace(line[starts[i]:end])
		}
		num := func(i int) uint64 {
			n, err := strconv.ParseUint(cell(i), 10, 64)
			if err != nil {
				t.Fatalf("column %s of %q: %v", names[i], line, err)
			}
			return n
		}
		short := func(i int) string { return strings.TrimPrefix(cell(i), "-") }
		if !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((now|.* ago)\)$`).MatchString(cell(4)) {
			t.Errorf("CREATED %q is not a date with its age", cell(4))
		}
		out = append(out, listed{
			ID: num(0), TopLevel: num(1), Gen: num(2), UUID: cell(6),
			ParentUUID: short(7), Recv: short(8), ReadOnly: cell(5) == "ro",
			Path: line[starts[9]:],
		})
	}
	return out
}

// shortened is want as the text table shows it: no ogen, 8-digit parent
// and received uuids.
func shortened(want []listed) []listed {
	out := make([]listed, len(want))
	for i, sv := range want {
		sv.OGen = 0
		if len(sv.ParentUUID) > 8 {
			sv.ParentUUID = sv.ParentUUID[:8]
		}
		if len(sv.Recv) > 8 {
			sv.Recv = sv.Recv[:8]
		}
		out[i] = sv
	}
	return out
}

func compareListings(t *testing.T, what string, got, want []listed) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	var b strings.Builder
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w any = "(none)", "(none)"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		mark := " "
		if !reflect.DeepEqual(g, w) {
			mark = "!"
		}
		fmt.Fprintf(&b, "%s sendfs %+v\n%s kernel %+v\n", mark, g, mark, w)
	}
	t.Errorf("%s differs from btrfs subvolume list:\n%s", what, b.String())
}

// TestCLIListMatchesKernel: nested subvolumes, read-only and writable
// snapshots, a snapshot of a snapshot, a received subvolume, a deleted one
// and a name with a space, listed by sendfs as the kernel lists them.
func TestCLIListMatchesKernel(t *testing.T) {
	fs := newFS(t, fsOpts{Size: 1 << 30})
	subvolCreate(t, fs, "vol")
	writeFile(t, fs.path("vol/f"), patterned(10000, 1))
	subvolCreate(t, fs, "vol/nested")
	subvolCreate(t, fs, "dir/deep/sv")
	snapshotRO(t, fs, "vol", "snaps/s1")
	writeFile(t, fs.path("vol/g"), []byte("changed"))
	snapshotRO(t, fs, "vol", "snaps/s 2")
	snapshotRO(t, fs, "snaps/s1", "snaps/s1-again")
	run(t, "btrfs", "subvolume", "snapshot", fs.path("vol"), fs.path("snaps/rw"))
	snapshotRO(t, fs, "vol", "snaps/gone")
	run(t, "btrfs", "subvolume", "delete", fs.path("snaps/gone"))
	stream := filepath.Join(t.TempDir(), "s1.stream")
	if err := os.WriteFile(stream, kernelSend(t, fs.Mnt, fs.path("snaps/s1"), ""), 0o600); err != nil {
		t.Fatal(err)
	}
	mustMkdir(t, fs.path("recv"))
	run(t, "btrfs", "receive", "-f", stream, fs.path("recv"))
	remountRO(t, fs)

	want := kernelList(t, fs.Mnt)
	if len(want) != 8 {
		t.Fatalf("kernel lists %d subvolumes, the test made 8:\n%+v", len(want), want)
	}
	t.Run("json", func(t *testing.T) {
		compareListings(t, "sendfs list --json", sendfsListJSON(t, fs.Images), want)
	})
	t.Run("text", func(t *testing.T) {
		compareListings(t, "sendfs list", sendfsListText(t, fs.Images), shortened(want))
	})
}

// TestCLIListMultiDevice: a raid1 filesystem on two images lists the same
// as the kernel; given one member only, list and send say which is missing.
func TestCLIListMultiDevice(t *testing.T) {
	fs := newFS(t, fsOpts{Devices: 2, Size: 1 << 30, MkfsArgs: []string{"-d", "raid1", "-m", "raid1"}})
	subvolCreate(t, fs, "vol")
	writeFile(t, fs.path("vol/f"), random(300000, 2))
	snapshotRO(t, fs, "vol", "snaps/a")
	snapshotRO(t, fs, "vol", "snaps/b")
	remountRO(t, fs)

	want := kernelList(t, fs.Mnt)
	compareListings(t, "sendfs list --json (raid1)", sendfsListJSON(t, fs.Images), want)
	compareListings(t, "sendfs list (raid1)", sendfsListText(t, fs.Images), shortened(want))

	sendfsRun(t, "list", fs.Images[0]).wantFailure(t, 1, "or --degraded to read without them")
	sendfsRun(t, "send", "-q", "-f", filepath.Join(t.TempDir(), "out"), fs.Images[1], "snaps/a").
		wantFailure(t, 1, "or --degraded to read without them")
}

// TestCLIErrors: each way a user can get a send wrong gives one clear line
// and a non-zero exit status, and a failed send leaves no FILE behind.
func TestCLIErrors(t *testing.T) {
	fs := newFS(t, fsOpts{Size: 1 << 30})
	subvolCreate(t, fs, "vol")
	writeFile(t, fs.path("vol/f"), patterned(50000, 3))
	snapshotRO(t, fs, "vol", "snaps/s1")
	writeFile(t, fs.path("vol/g"), patterned(5000, 4))
	snapshotRO(t, fs, "vol", "snaps/s2")
	remountRO(t, fs)
	img := fs.Images[0]
	tmp := t.TempDir()

	t.Run("not btrfs", func(t *testing.T) {
		junk := filepath.Join(tmp, "random.img")
		if err := os.WriteFile(junk, random(4<<20, 9), 0o600); err != nil {
			t.Fatal(err)
		}
		sendfsRun(t, "list", junk).wantFailure(t, 1, junk, "not a btrfs filesystem")
		sendfsRun(t, "send", "--size", junk, "snaps/s1").wantFailure(t, 1, junk, "not a btrfs filesystem")
	})
	t.Run("truncated image", func(t *testing.T) {
		small := filepath.Join(tmp, "small.img")
		must(t, os.WriteFile(small, nil, 0o600))
		mustTruncate(t, small, 256<<20)
		run(t, "mkfs.btrfs", "-q", "-f", small)
		mustTruncate(t, small, 100<<20)
		sendfsRun(t, "list", small).wantFailure(t, 1, small, "truncated")
	})
	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(tmp, "missing.img")
		sendfsRun(t, "list", missing).wantFailure(t, 1, "cannot open "+missing+": no such file or directory")
	})
	t.Run("unknown subvolume", func(t *testing.T) {
		sendfsRun(t, "send", "--size", img, "snaps/nope").wantFailure(t, 1, `no subvolume "snaps/nope"`)
		sendfsRun(t, "send", "--size", img, "4242").wantFailure(t, 1, `no subvolume "4242"`)
		sendfsRun(t, "send", "--size", "-p", "snaps/nope", img, "snaps/s2").wantFailure(t, 1, `no parent subvolume "snaps/nope"`)
	})
	t.Run("writable subvolume", func(t *testing.T) {
		sendfsRun(t, "send", "--size", img, "vol").wantFailure(t, 1,
			"subvolume vol is not read-only; snapshot it with `btrfs subvolume snapshot -r`, or pass --allow-writable if the image is not mounted anywhere")
		sendfsRun(t, "send", "--size", "-p", "vol", img, "snaps/s2").wantFailure(t, 1, "parent subvolume vol is not read-only")
		if r := sendfsRun(t, "send", "--size", "--allow-writable", img, "vol"); r.code != 0 {
			t.Errorf("--allow-writable: exit %d: %s", r.code, r.stderr)
		}
	})
	t.Run("options", func(t *testing.T) {
		for args, want := range map[[2]string]string{
			{"--proto", "3"}:                   "protocol version 3 is not supported",
			{"--proto=1", "--compressed-data"}: "--compressed-data needs protocol version 2 or later (requested 1)",
		} {
			if r := sendfsRun(t, "send", "--size", args[0], args[1], img, "snaps/s1"); r.code != 2 || !strings.Contains(r.stderr, want) {
				t.Errorf("send %v: exit %d, stderr:\n%s", args, r.code, r.stderr)
			}
		}
		sendfsRun(t, "send", "--size", "-c", "vol", img, "snaps/s2").wantFailure(t, 1, "clone source vol is not read-only")
		sendfsRun(t, "send", "--size", "-c", "5", img, "snaps/s2").wantFailure(t, 1, "the top level (id 5) cannot be a clone source, as with the kernel's send")
		sendfsRun(t, "send", "--size", "-c", "snaps/nope", img, "snaps/s2").wantFailure(t, 1, `no clone source "snaps/nope"`)
		sendfsRun(t, "send", "--size", "-c", "snaps/s1", img, "vol", "snaps/s2").wantFailure(t, 1, "subvolume vol is not read-only")
	})
	t.Run("usage", func(t *testing.T) {
		if r := sendfsRun(t, "send", img); r.code != 2 || !strings.Contains(r.stderr, "need DEVICE... and SUBVOL") {
			t.Errorf("send with one argument: exit %d, stderr:\n%s", r.code, r.stderr)
		}
		if r := sendfsRun(t, "list", "--bogus", img); r.code != 2 || !strings.Contains(r.stderr, "unknown flag: --bogus") {
			t.Errorf("unknown flag: exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})
	t.Run("same stream by path id and uuid", func(t *testing.T) {
		var subvols []listJSON
		must(t, json.Unmarshal([]byte(sendfsRun(t, "list", "--json", img).stdout), &subvols))
		var s2 listJSON
		for _, sv := range subvols {
			if sv.Path == "snaps/s2" {
				s2 = sv
			}
		}
		byPath := sendfsSend(t, fs.Images, "snaps/s2", "")
		for _, spec := range []string{"/snaps/s2", strconv.FormatUint(s2.ID, 10), deref(s2.UUID)} {
			if got := sendfsSend(t, fs.Images, spec, ""); !bytes.Equal(got, byPath) {
				t.Errorf("send %q gave %d bytes that differ from send snaps/s2 (%d bytes)", spec, len(got), len(byPath))
			}
		}
		r := sendfsRun(t, "send", "--size", img, "snaps/s2")
		if r.code != 0 || strings.TrimSpace(r.stdout) != strconv.Itoa(len(byPath)) {
			t.Errorf("send --size printed %q (exit %d, %s), stream is %d bytes", r.stdout, r.code, r.stderr, len(byPath))
		}
		r = sendfsRun(t, "send", img, "snaps/s2")
		if r.code != 0 || r.stdout != string(byPath) || r.stderr != "" {
			t.Errorf("send to stdout: exit %d, %d bytes, stderr %q; want the %d bytes of -f", r.code, len(r.stdout), r.stderr, len(byPath))
		}
	})
}

// TestCLIFailedSendLeavesNoFile corrupts the data of a file in a snapshot
// (single data copy): the send fails midway, with -f no FILE (and no
// temporary file) is left, to stdout the message says the stream is
// incomplete.
func TestCLIFailedSendLeavesNoFile(t *testing.T) {
	fs := newFS(t, fsOpts{Size: 512 << 20})
	subvolCreate(t, fs, "vol")
	for i := range 20 {
		writeFile(t, fs.path(fmt.Sprintf("vol/before%02d", i)), random(64<<10, uint64(100+i)))
	}
	marker := corruptMarker()
	writeFile(t, fs.path("vol/victim"), bytes.Repeat(marker, 64))
	snapshotRO(t, fs, "vol", "snaps/s1")
	unmount(t, fs)
	img := fs.Images[0]
	corruptFirst(t, img, marker)

	dir := t.TempDir()
	out := filepath.Join(dir, "s1.stream")
	r := sendfsRun(t, "send", "-q", "-f", out, img, "snaps/s1")
	r.wantFailure(t, 1, "send failed", out+" was not written")
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("failed send left %v in %s (%v)", ents, dir, err)
	}

	// An existing FILE stays as it was.
	must(t, os.WriteFile(out, []byte("previous stream"), 0o644))
	sendfsRun(t, "send", "-q", "-f", out, img, "snaps/s1").wantFailure(t, 1, "send failed")
	if b, _ := os.ReadFile(out); string(b) != "previous stream" {
		t.Errorf("failed send changed the existing FILE to %d bytes", len(b))
	}

	r = sendfsRun(t, "send", img, "snaps/s1")
	r.wantFailure(t, 1, "send failed", "incomplete stream")
}

// corruptMarker is one 4 KiB block that is easy to find in an image.
func corruptMarker() []byte {
	b := make([]byte, 4096)
	for i := range b {
		b[i] = "sendfs-cli-corrupt-me:"[i%22]
	}
	return b
}

// corruptFirst overwrites the first 4 KiB-aligned copy of marker in the
// image with other bytes (the file's checksum then no longer matches).
func corruptFirst(t *testing.T, img string, marker []byte) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	buf := make([]byte, 1<<20)
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := f.ReadAt(buf, off)
		for i := 0; i+len(marker) <= n; i += len(marker) {
			if bytes.Equal(buf[i:i+len(marker)], marker) {
				_, werr := f.WriteAt(bytes.Repeat([]byte{0xAA}, len(marker)), off+int64(i))
				must(t, werr)
				must(t, f.Sync())
				return
			}
		}
		if err == io.EOF {
			t.Fatalf("marker block not found in %s", img)
		}
		must(t, err)
	}
}
