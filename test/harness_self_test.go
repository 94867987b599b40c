package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHarnessSelfCheck proves the comparison helpers see what they must:
// a copy made by cp -a compares equal, then each kind of difference is
// reported with its path.
func TestHarnessSelfCheck(t *testing.T) {
	fs := newFS(t, fsOpts{Size: 1 << 30})
	a := fs.path("a")
	mustMkdir(t, a)
	writeFile(t, filepath.Join(a, "f"), patterned(100000, 1))
	writeFile(t, filepath.Join(a, "g"), []byte("hello"))
	mustLink(t, filepath.Join(a, "g"), filepath.Join(a, "g2"))
	mustSymlink(t, "target", filepath.Join(a, "l"))
	run(t, "setfattr", "-n", "user.x", "-v", "1", filepath.Join(a, "f"))
	sparse := filepath.Join(a, "sparse")
	writeAt(t, sparse, 1<<20, []byte("x"))
	b := fs.path("b")
	run(t, "cp", "-a", "--reflink=always", a, b)
	if diffs, err := treeDiffs(a, b); err != nil || len(diffs) != 0 {
		t.Fatalf("cp -a copy differs: %v %v", err, diffs)
	}
	if diffs, err := holeDiffs(a, b); err != nil || len(diffs) != 0 {
		t.Fatalf("cp -a copy has different holes: %v %v", err, diffs)
	}

	// One change of each kind, each must show up with its path.
	mustChmod(t, filepath.Join(b, "f"), 0o4755)
	run(t, "setfattr", "-n", "user.x", "-v", "2", filepath.Join(b, "f"))
	run(t, "setfattr", "-n", "trusted.t", "-v", "", filepath.Join(b, "g"))
	writeAt(t, filepath.Join(b, "g2"), 2, []byte("L"))
	must(t, os.Remove(filepath.Join(b, "g2")))
	writeFile(t, filepath.Join(b, "g2"), []byte("heLlo"))
	must(t, os.Remove(filepath.Join(b, "l")))
	mustSymlink(t, "other", filepath.Join(b, "l"))
	must(t, os.Lchown(filepath.Join(b, "sparse"), 7, 8))
	writeAt(t, filepath.Join(b, "sparse"), 4096, []byte{0})
	writeFile(t, filepath.Join(b, "new"), nil)

	diffs, err := treeDiffs(a, b)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(diffs, "\n")
	for _, want := range []string{
		`"f": mode = 4755`,
		`"f": xattr user.x=31 missing`,
		`"f": unexpected xattr user.x=32`,
		`"g": unexpected xattr trusted.t=`,
		`"g": content =`,
		`"g": hardlinks = g, want g | g2`,
		`"g2": hardlinks = g2, want g | g2`,
		`"l": target = other, want target`,
		`"sparse": uid = 7`,
		`"sparse": gid = 8`,
		`"new": unexpected file`,
		`".": mtime =`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("differences do not contain %q; got:\n%s", want, all)
		}
	}
	// The written zero byte changes no content but the hole map.
	if strings.Contains(all, `"sparse": content`) {
		t.Errorf("a written zero block counted as a content change:\n%s", all)
	}
	hd, err := holeDiffs(a, b)
	if err != nil || len(hd) != 1 || !strings.HasPrefix(hd[0], `"sparse": data ranges`) {
		t.Errorf("holeDiffs = %q, %v; want one difference on sparse", hd, err)
	}
}

// TestKernelRoundTripSmoke checks the kernel oracle path end to end on a
// small tree: kernel send, receive, compare, dump.
func TestKernelRoundTripSmoke(t *testing.T) {
	fs := newFS(t, fsOpts{Size: 1 << 30})
	subvolCreate(t, fs, "sv")
	writeFile(t, fs.path("sv/a"), []byte("hello"))
	mustMkdir(t, fs.path("sv/d"))
	s1 := snapshotRO(t, fs, "sv", "snaps/s1")
	writeFile(t, fs.path("sv/d/b"), patterned(200000, 3))
	must(t, os.Rename(fs.path("sv/a"), fs.path("sv/d/a")))
	s2 := snapshotRO(t, fs, "sv", "snaps/s2")
	full := kernelSend(t, fs.Mnt, s1, "")
	inc := kernelSend(t, fs.Mnt, s2, s1)
	got := receive(t, full, inc)
	compareTrees(t, s2, got)
	d := dump(t, inc)
	if len(d) < 3 || !strings.HasPrefix(d[0], "snapshot") {
		t.Errorf("dump of an incremental stream starts %q", d[:1])
	}
	if diff := diffDumps(d, d); diff != nil {
		t.Errorf("a dump differs from itself: %v", diff)
	}
	if diff := diffDumps(dump(t, full), d); len(diff) == 0 {
		t.Error("diffDumps found no difference between two different streams")
	}
}

// TestDiffDumps checks what diffDumps treats as equal and how it reports
// differences (no root needed).
func TestDiffDumps(t *testing.T) {
	k := []string{
		"subvol          ./s                  uuid=u transid=7",
		"mkfile          ./s/o257-7-0",
		"rename          ./s/o257-7-0         dest=./s/a",
		"utimes          ./s/a                atime=1 mtime=2 ctime=3",
	}
	same := []string{
		"subvol ./s uuid=u transid=7",
		"mkfile ./s/o257-7-3",
		"rename ./s/o257-7-3 dest=./s/a",
		"utimes ./s/a atime=1 mtime=2 ctime=3",
	}
	if d := diffDumps(k, same); d != nil {
		t.Errorf("padding and orphan indexes should not count: %q", d)
	}
	other := append([]string{}, same...)
	other[1], other[2] = "mkfile ./s/o258-7-0", "rename ./s/o258-7-0 dest=./s/a"
	d := strings.Join(diffDumps(k, other), "\n")
	if !strings.Contains(d, "command 2 kernel: mkfile ./s/o257-7-N") || !strings.Contains(d, "command 2 ours  : mkfile ./s/o258-7-N") {
		t.Errorf("another orphan inode must differ, pairwise:\n%s", d)
	}
	swapped := []string{same[0], same[1], same[3], same[2]}
	if d := strings.Join(diffDumps(k, swapped), "\n"); !strings.Contains(d, "different order") {
		t.Errorf("a reordering should be named:\n%s", d)
	}
	if d := strings.Join(diffDumps(k, same[:3]), "\n"); !strings.Contains(d, "kernel 4 commands, ours 3") || !strings.Contains(d, "only kernel: utimes") {
		t.Errorf("a missing command should be listed:\n%s", d)
	}
}

func TestSameDataDifferentSources(t *testing.T) {
	kernel := []string{
		"mkfile ./s/o257-7-0",
		"clone ./s/f offset=0 len=8192 from=./s/a clone_offset=0",
		"write ./s/f offset=8192 len=100",
		"chown ./s/f gid=0 uid=0",
	}
	other := []string{
		"mkfile ./s/o257-7-0",
		"clone ./s/f offset=0 len=4096 from=./s/b clone_offset=4096",
		"write ./s/f offset=4096 len=4196",
		"chown ./s/f gid=0 uid=0",
	}
	if !sameDataDifferentSources(kernel, other) {
		t.Error("same ranges through other sources must be accepted")
	}
	short := slices.Clone(other)
	short[2] = "write ./s/f offset=4096 len=4000"
	if sameDataDifferentSources(kernel, short) {
		t.Error("a range sent by one side only must be refused")
	}
	chown := slices.Clone(other)
	chown[3] = "chown ./s/f gid=0 uid=1"
	if sameDataDifferentSources(kernel, chown) {
		t.Error("a difference outside data commands must be refused")
	}
}

// TestMountHangDump: a test that waits too long for the reply of a mount
// fails with the stacks of the mount's goroutines, and its wait ends.
func TestMountHangDump(t *testing.T) {
	requireFUSE(t)
	fs := newFS(t, fsOpts{Size: 1 << 30})
	subvolCreate(t, fs, "data")
	snapshotRO(t, fs, "data", "snap")
	remountRO(t, fs)
	m := startMount(t, fs.Images, "--refresh", "0")
	// Stopped while mounting, the mount could not end: go-fuse opens a
	// file in it then, and that request would never be answered.
	if m.waitLog(t, "serving send streams", time.Minute) == "" {
		t.Fatalf("the mount did not get ready\n%s", m.stderr)
	}
	must(t, m.cmd.Process.Signal(syscall.SIGSTOP))
	waitStopped(t, m.cmd.Process.Pid) // it answers nothing now
	rec := &recordingTB{TB: t}
	var statErr error
	m.within(rec, time.Second, "stat", func() { _, statErr = os.Stat(m.streamPath("snap", "")) })
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "no reply from sendfs mount") || !strings.Contains(rec.errs[0], "goroutine ") || !strings.Contains(rec.errs[0], "SIGQUIT") {
		t.Errorf("the failure of a hanging mount's test is not its goroutine dump: %q", rec.errs)
	}
	if statErr == nil {
		t.Error("the stat waiting for the mount succeeded after the dump ended it")
	}
}

// waitStopped waits until every thread of process pid is stopped: a stop
// signal reaches them one after another, and a thread not yet stopped may
// still answer a request.
func waitStopped(t *testing.T, pid int) {
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		must(t, err)
		stopped := len(stats) > 0
		for _, f := range stats {
			b, err := os.ReadFile(f)
			// The state follows the command name, which is in parentheses.
			if i := bytes.LastIndexByte(b, ')'); err != nil || i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				stopped = false
			}
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d not stopped a minute after SIGSTOP", pid)
		}
	}
}

// recordingTB keeps the errors of a test that is meant to fail.
type recordingTB struct {
	testing.TB
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
