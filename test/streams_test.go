package test

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// kernelSend runs the kernel's `btrfs send [opts] [-p parent] snap` on a
// mounted filesystem and returns the stream. snap and parent are absolute
// paths.
func kernelSend(t testing.TB, mnt, snap, parent string, opts ...string) []byte {
	t.Helper()
	b, err := kernelSendErr(t, snap, parent, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		t.Fatalf("btrfs send %s wrote an empty stream (mounted at %s)", snap, mnt)
	}
	return b
}

// kernelSendErr is kernelSend returning the kernel's failure.
func kernelSendErr(t testing.TB, snap, parent string, opts ...string) ([]byte, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "kernel.stream")
	args := append([]string{"send", "-q", "-f", f}, opts...)
	if parent != "" {
		args = append(args, "-p", parent)
	}
	if _, err := runErr("btrfs", append(args, snap)...); err != nil {
		return nil, err
	}
	return os.ReadFile(f)
}

// sendfsSend runs `sendfs send -q -f FILE [opts] [-p PARENT] IMAGE...
// SUBVOL` and returns the stream; subvol and parent are paths from the top
// level as `sendfs list` prints them ("snaps/s1"). It fails the test if
// sendfs fails.
func sendfsSend(t testing.TB, images []string, subvol, parent string, opts ...string) []byte {
	t.Helper()
	b, err := sendfsSendErr(t, images, subvol, parent, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sendfsSendErr is sendfsSend returning the error (with sendfs's stderr).
func sendfsSendErr(t testing.TB, images []string, subvol, parent string, opts ...string) ([]byte, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "sendfs.stream")
	args := append([]string{"send", "-q", "-f", f}, opts...)
	if parent != "" {
		args = append(args, "-p", parent)
	}
	args = append(args, images...)
	if _, err := runErr(sendfsBinary(t), append(args, subvol)...); err != nil {
		return nil, err
	}
	return os.ReadFile(f)
}

// sendfsSize runs `sendfs send --size` and returns the length it prints.
func sendfsSize(t testing.TB, images []string, subvol, parent string, opts ...string) (int64, error) {
	t.Helper()
	args := append([]string{"send", "--size"}, opts...)
	if parent != "" {
		args = append(args, "-p", parent)
	}
	args = append(args, images...)
	out, err := runErr(sendfsBinary(t), append(args, subvol)...)
	if err != nil {
		return 0, err
	}
	var n int64
	if _, err := fmt.Sscanf(strings.TrimSpace(out), "%d", &n); err != nil {
		return 0, fmt.Errorf("sendfs send --size printed %q, not a byte count", out)
	}
	return n, nil
}

// receiver is a scratch btrfs filesystem that streams are received into,
// each receive in a fresh directory.
type receiver struct {
	fs *btrfsFS
	n  int
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	return &receiver{fs: newFS(t, fsOpts{Size: 16 << 30})}
}

// receive runs `btrfs receive` of each stream in order into one fresh
// directory and returns the path of the subvolume made by the last one.
// Incremental streams find their parent anywhere in the receiving
// filesystem by uuid.
func (r *receiver) receive(t testing.TB, streams ...[]byte) string {
	t.Helper()
	last, err := r.receiveErr(t, streams...)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// receiveErr is receive returning the failure of btrfs receive.
func (r *receiver) receiveErr(t testing.TB, streams ...[]byte) (string, error) {
	t.Helper()
	r.n++
	dir := r.fs.path(fmt.Sprintf("r%d", r.n))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var last string
	for i, s := range streams {
		before := dirNames(t, dir)
		var stderr bytes.Buffer
		cmd, cancel := command("btrfs", "receive", dir)
		cmd.Stdin, cmd.Stderr = bytes.NewReader(s), &stderr
		err := cmd.Run()
		cancel()
		if err != nil {
			return "", fmt.Errorf("btrfs receive of stream %d/%d (%d bytes): %v\n%s", i+1, len(streams), len(s), err, lastLines(stderr.String(), 20))
		}
		var made []string
		for n := range dirNames(t, dir) {
			if !before[n] {
				made = append(made, n)
			}
		}
		sort.Strings(made)
		if len(made) != 1 {
			t.Fatalf("btrfs receive of stream %d/%d made %q in %s, want one subvolume", i+1, len(streams), made, dir)
		}
		last = filepath.Join(dir, made[0])
	}
	return last, nil
}

func dirNames(t testing.TB, dir string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, e := range ents {
		m[e.Name()] = true
	}
	return m
}

var (
	receiversMu sync.Mutex
	receivers   = map[testing.TB]*receiver{}
)

// receive receives streams (in order) into the scratch filesystem of test t,
// made on first use, and returns the received subvolume's path.
func receive(t testing.TB, streams ...[]byte) string {
	t.Helper()
	receiversMu.Lock()
	r := receivers[t]
	receiversMu.Unlock()
	if r == nil {
		r = newReceiver(t)
		receiversMu.Lock()
		receivers[t] = r
		receiversMu.Unlock()
		t.Cleanup(func() {
			receiversMu.Lock()
			delete(receivers, t)
			receiversMu.Unlock()
		})
	}
	return r.receive(t, streams...)
}

// dump returns `btrfs receive --dump` of a stream, one command per line.
func dump(t testing.TB, stream []byte) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd, cancel := command("btrfs", "receive", "--dump")
	defer cancel()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stream), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("btrfs receive --dump: %v\n%s", err, lastLines(stderr.String(), 20))
	}
	return strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
}

var (
	spaces = regexp.MustCompile(`\s+`)
	// orphanName is the kernel's temporary name o<ino>-<gen>-<idx>; the
	// index is a per-stream counter whose values may legitimately differ.
	orphanName = regexp.MustCompile(`(^|/)o(\d+)-(\d+)-\d+($|[/ ])`)
)

// normalizeDump removes what legitimately differs between two equivalent
// streams: column padding and the index of orphan names.
func normalizeDump(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		l = spaces.ReplaceAllString(strings.TrimSpace(l), " ")
		out[i] = orphanName.ReplaceAllString(l, "${1}o${2}-${3}-N${4}")
	}
	return out
}

// diffDumps compares two dumps after normalizeDump and returns readable
// lines describing the differences (nil when equal): where the first
// difference is, and which commands only one side has.
func diffDumps(kernel, ours []string) []string {
	k, o := normalizeDump(kernel), normalizeDump(ours)
	pre := 0
	for pre < len(k) && pre < len(o) && k[pre] == o[pre] {
		pre++
	}
	if pre == len(k) && pre == len(o) {
		return nil
	}
	suf := 0
	for suf < len(k)-pre && suf < len(o)-pre && k[len(k)-1-suf] == o[len(o)-1-suf] {
		suf++
	}
	const maxLines = 12
	diff := []string{fmt.Sprintf("dumps differ: kernel %d commands, ours %d; first difference at command %d, %d equal at the end", len(k), len(o), pre+1, suf)}
	show := func(who string, lines []string) {
		for i, l := range lines {
			if i == maxLines {
				diff = append(diff, fmt.Sprintf("  %s: ... %d more", who, len(lines)-maxLines))
				break
			}
			diff = append(diff, "  "+who+": "+l)
		}
	}
	kmid, omid := k[pre:len(k)-suf], o[pre:len(o)-suf]
	if len(kmid) == len(omid) {
		// Same length: list only the commands that differ, side by side.
		shown := 0
		for i := range kmid {
			if kmid[i] == omid[i] {
				continue
			}
			if shown++; shown > maxLines {
				diff = append(diff, "  ... more")
				break
			}
			diff = append(diff, fmt.Sprintf("  command %d kernel: %s", pre+i+1, kmid[i]), fmt.Sprintf("  command %d ours  : %s", pre+i+1, omid[i]))
		}
	} else {
		show("kernel", kmid)
		show("ours  ", omid)
	}
	onlyK, onlyO := multisetDiff(kmid, omid)
	if len(onlyK) == 0 && len(onlyO) == 0 {
		diff = append(diff, "  same commands in a different order")
	} else if len(kmid) != len(omid) {
		diff = append(diff, fmt.Sprintf("  as sets: %d commands only in kernel's, %d only in ours", len(onlyK), len(onlyO)))
		show("only kernel", onlyK)
		show("only ours  ", onlyO)
	}
	return diff
}

// multisetDiff returns the lines of a not in b and of b not in a, counting
// repeats, in their original order.
func multisetDiff(a, b []string) (onlyA, onlyB []string) {
	count := map[string]int{}
	for _, l := range b {
		count[l]++
	}
	for _, l := range a {
		if count[l] > 0 {
			count[l]--
		} else {
			onlyA = append(onlyA, l)
		}
	}
	count = map[string]int{}
	for _, l := range a {
		count[l]++
	}
	for _, l := range b {
		if count[l] > 0 {
			count[l]--
		} else {
			onlyB = append(onlyB, l)
		}
	}
	return onlyA, onlyB
}

// sameDataDifferentSources reports whether two dumps differ only in how file
// data is sent: which clone source (or a write instead of a clone) covers a
// range. The kernel picks among equal clone sources in the order of its
// backref walk, which a reader of the on-disk format cannot reproduce in
// every case; the received files are the same, which the round trip checks.
func sameDataDifferentSources(kernel, ours []string) bool {
	k, o := normalizeDump(kernel), normalizeDump(ours)
	kData, kOther := splitDataCommands(k)
	oData, oOther := splitDataCommands(o)
	return slices.Equal(kOther, oOther) && maps.Equal(kData, oData)
}

// dataCommand matches write and clone lines: name, path, offset, length.
var dataCommand = regexp.MustCompile(`^(write|clone) (.*?) offset=(\d+) len=(\d+)`)

// splitDataCommands returns, for write and clone lines, the bytes each file
// gets (path → sorted, merged ranges), and every other line in order.
func splitDataCommands(lines []string) (map[string]string, []string) {
	ranges := map[string][][2]uint64{}
	var other []string
	for _, l := range lines {
		m := dataCommand.FindStringSubmatch(l)
		if m == nil {
			other = append(other, l)
			continue
		}
		off, _ := strconv.ParseUint(m[3], 10, 64)
		n, _ := strconv.ParseUint(m[4], 10, 64)
		ranges[m[2]] = append(ranges[m[2]], [2]uint64{off, off + n})
	}
	out := map[string]string{}
	for p, rs := range ranges {
		slices.SortFunc(rs, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
		var merged [][2]uint64
		for _, r := range rs {
			if len(merged) > 0 && r[0] <= merged[len(merged)-1][1] {
				merged[len(merged)-1][1] = max(merged[len(merged)-1][1], r[1])
				continue
			}
			merged = append(merged, r)
		}
		out[p] = fmt.Sprint(merged)
	}
	return out, other
}
