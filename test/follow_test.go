package test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// followWithin is how soon a change on disk must show in a mount that
// follows the filesystem (--refresh 2s by default).
const followWithin = 10 * time.Second

// waitFor polls cond until it holds or followWithin has passed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > followWithin {
			t.Fatalf("%s: not within %v", what, followWithin)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s after %v", what, time.Since(start).Round(10*time.Millisecond))
}

// checkServed: the stream file of child (from parent) has the size and the
// bytes of sendfs send on devs.
func checkServed(t testing.TB, m *sendfsMount, devs []string, child, parent string) []byte {
	t.Helper()
	st, err := os.Stat(m.streamPath(child, parent))
	must(t, err)
	want, err := sendfsSize(t, devs, child, parent)
	must(t, err)
	if st.Size() != want {
		t.Errorf("%s: st_size %d, sendfs send --size says %d", m.streamPath(child, parent), st.Size(), want)
	}
	got := readFile(t, m.streamPath(child, parent))
	sameBytes(t, m.streamPath(child, parent), sendfsSend(t, devs, child, parent), got)
	return got
}

func gone(p string) bool {
	_, err := os.Lstat(p)
	return errors.Is(err, fs.ErrNotExist)
}

// TestFollowLiveDevice: sendfs mount serves the loop block device of a
// filesystem that the kernel has mounted read-write and keeps changing. New
// snapshots appear (and rebuild through btrfs receive), renamed ones move
// to their new name with the new name's size and bytes, deleted ones
// vanish, each within followWithin of the commit.
func TestFollowLiveDevice(t *testing.T) {
	requireFUSE(t)
	bfs := newFS(t, fsOpts{Size: 2 << 30})
	sv := subvolCreate(t, bfs, "sv")
	baseTree(t, sv)
	snapshotRO(t, bfs, "sv", "snaps/s1")
	syncFS(t, bfs)
	m := startMount(t, bfs.Loops, "--cache-dir", t.TempDir())
	checkServed(t, m, bfs.Loops, "snaps/s1", "")
	s1ino := inodeOf(t, m.path("snapshots", escapeSubvol("snaps/s1")))

	// A new snapshot appears, in snapshots/ and in its lineage's from/.
	writeAt(t, filepath.Join(sv, "new-file"), 0, random(300000, 3))
	mustRename(t, filepath.Join(sv, "a"), filepath.Join(sv, "a-renamed"))
	snapshotRO(t, bfs, "sv", "snaps/s2")
	syncFS(t, bfs)
	waitFor(t, "new snapshot served", func() bool { return !gone(m.streamPath("snaps/s2", "")) })
	waitFor(t, "new snapshot listed in from/", func() bool {
		names, _ := os.ReadDir(m.path("snapshots", escapeSubvol("snaps/s1"), "from"))
		for _, n := range names {
			if n.Name() == escapeSubvol("snaps/s2")+".stream" {
				return true
			}
		}
		return false
	})
	full2 := checkServed(t, m, bfs.Loops, "snaps/s2", "")
	inc2 := checkServed(t, m, bfs.Loops, "snaps/s2", "snaps/s1")
	full1 := readFile(t, m.streamPath("snaps/s1", ""))
	compareTrees(t, bfs.path("snaps/s2"), receive(t, full2))
	compareTrees(t, bfs.path("snaps/s2"), receive(t, full1, inc2))
	if got := inodeOf(t, m.path("snapshots", escapeSubvol("snaps/s1"))); got != s1ino {
		t.Errorf("inode of an unchanged snapshot's directory changed from %d to %d", s1ino, got)
	}

	// A rename (what snapper and btrbk do when they rotate names).
	oldFull := readFile(t, m.streamPath("snaps/s1", ""))
	mustRename(t, bfs.path("snaps/s1"), bfs.path("snaps/daily.10"))
	syncFS(t, bfs)
	waitFor(t, "renamed snapshot served under its new name", func() bool { return !gone(m.streamPath("snaps/daily.10", "")) })
	waitFor(t, "old name gone", func() bool { return gone(m.path("snapshots", escapeSubvol("snaps/s1"))) })
	renamed := checkServed(t, m, bfs.Loops, "snaps/daily.10", "")
	if len(renamed) == len(oldFull) {
		t.Errorf("the renamed snapshot's stream has the old name's length %d: the name is in the stream", len(renamed))
	}
	checkServed(t, m, bfs.Loops, "snaps/s2", "snaps/daily.10")

	// A deletion.
	run(t, "btrfs", "subvolume", "delete", bfs.path("snaps/s2"))
	syncFS(t, bfs)
	waitFor(t, "deleted snapshot gone", func() bool { return gone(m.path("snapshots", escapeSubvol("snaps/s2"))) })
	for _, p := range []string{m.streamPath("snaps/s2", ""), m.streamPath("snaps/daily.10", "snaps/s2")} {
		if !gone(p) {
			t.Errorf("%s still exists after the deletion", p)
		}
	}
	if line := m.waitLog(t, "subvolume list changed", time.Second); line == "" {
		t.Errorf("no log line about the change:\n%s", m.stderr)
	}
}

func inodeOf(t testing.TB, p string) uint64 {
	t.Helper()
	st, err := os.Stat(p)
	must(t, err)
	return st.Sys().(*syscall.Stat_t).Ino
}
