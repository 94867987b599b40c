package test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sendfs/btrfsread"
	"sendfs/sendgen"
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

// liveFS makes a filesystem, mounted read-write, with a subvolume sv (its
// path is returned) and a read-only snapshot of it, snaps/s1, committed.
func liveFS(t *testing.T) (*btrfsFS, string) {
	requireFUSE(t)
	bfs := newFS(t, fsOpts{Size: 1 << 30})
	sv := subvolCreate(t, bfs, "sv")
	baseTree(t, sv)
	snapshotRO(t, bfs, "sv", "snaps/s1")
	syncFS(t, bfs)
	return bfs, sv
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
	bfs, sv := liveFS(t)
	m := startMount(t, bfs.Loops, "--cache-dir", t.TempDir())
	checkServed(t, m, bfs.Loops, "snaps/s1", "")
	s1ino := inodeOf(t, m.path("snapshots", subvolName("snaps/s1")))

	// A new snapshot appears, in snapshots/ and in its lineage's from/.
	writeAt(t, filepath.Join(sv, "new-file"), 0, random(300000, 3))
	mustRename(t, filepath.Join(sv, "a"), filepath.Join(sv, "a-renamed"))
	snapshotRO(t, bfs, "sv", "snaps/s2")
	syncFS(t, bfs)
	waitFor(t, "new snapshot served", func() bool { return !gone(m.streamPath("snaps/s2", "")) })
	waitFor(t, "new snapshot listed in from/", func() bool {
		names, _ := os.ReadDir(m.path("snapshots", subvolName("snaps/s1"), "from"))
		for _, n := range names {
			if n.Name() == subvolName("snaps/s2")+".stream" {
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
	if got := inodeOf(t, m.path("snapshots", subvolName("snaps/s1"))); got != s1ino {
		t.Errorf("inode of an unchanged snapshot's directory changed from %d to %d", s1ino, got)
	}

	// A rename (what snapper and btrbk do when they rotate names).
	oldFull := readFile(t, m.streamPath("snaps/s1", ""))
	mustRename(t, bfs.path("snaps/s1"), bfs.path("snaps/daily.10"))
	syncFS(t, bfs)
	waitFor(t, "renamed snapshot served under its new name", func() bool { return !gone(m.streamPath("snaps/daily.10", "")) })
	waitFor(t, "old name gone", func() bool { return gone(m.path("snapshots", subvolName("snaps/s1"))) })
	renamed := checkServed(t, m, bfs.Loops, "snaps/daily.10", "")
	if len(renamed) == len(oldFull) {
		t.Errorf("the renamed snapshot's stream has the old name's length %d: the name is in the stream", len(renamed))
	}
	checkServed(t, m, bfs.Loops, "snaps/s2", "snaps/daily.10")

	// A deletion.
	run(t, "btrfs", "subvolume", "delete", bfs.path("snaps/s2"))
	syncFS(t, bfs)
	waitFor(t, "deleted snapshot gone", func() bool { return gone(m.path("snapshots", subvolName("snaps/s2"))) })
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

// TestBalanceWhileReading: a stream read slowly through the mount while a
// full balance (again and again), snapshot deletions and new writes run is
// byte-identical to the stream before them; so is every `sendfs send` of
// the device run during a balance. Both read the loop block device of the
// filesystem the kernel has mounted read-write.
func TestBalanceWhileReading(t *testing.T) {
	requireFUSE(t)
	bfs := newFS(t, fsOpts{Size: 1 << 30, MountOpts: "compress=zstd"})
	sv := subvolCreate(t, bfs, "sv")
	for i := range 6 {
		writeFile(t, filepath.Join(sv, fmt.Sprintf("random%d", i)), random(12<<20, uint64(i)))
		writeFile(t, filepath.Join(sv, fmt.Sprintf("text%d", i)), patterned(12<<20, uint64(i)))
	}
	nfiles(t, sv, "small-", 2000)
	snapshotRO(t, bfs, "sv", "snaps/s1")
	for i := range 3 {
		writeFile(t, filepath.Join(sv, fmt.Sprintf("random%d", i)), random(12<<20, uint64(100+i)))
		snapshotRO(t, bfs, "sv", fmt.Sprintf("snaps/old%d", i))
	}
	syncFS(t, bfs)
	want := sendfsSend(t, bfs.Loops, "snaps/s1", "")
	m := startMount(t, bfs.Loops, "--cache-dir", "")
	f, err := os.Open(m.streamPath("snaps/s1", ""))
	must(t, err)
	defer f.Close()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 1<<20)
	readSome := func(n int) {
		for range n {
			k, err := f.Read(buf)
			got = append(got, buf[:k]...)
			if err != nil {
				return
			}
		}
	}
	readSome(3) // past the first MiB: the stream's index is built now

	stop := make(chan struct{})
	churnDone := make(chan error, 1)
	var balances atomic.Int32
	go func() {
		churnDone <- func() error {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return nil
				default:
				}
				if i < 3 {
					if _, err := runErr("btrfs", "subvolume", "delete", bfs.path(fmt.Sprintf("snaps/old%d", i))); err != nil {
						return err
					}
				}
				if err := os.WriteFile(filepath.Join(sv, fmt.Sprintf("new%d", i%4)), random(8<<20, uint64(1000+i)), 0o644); err != nil {
					return err
				}
				if _, err := runErr("btrfs", "balance", "start", "--full-balance", bfs.Mnt); err != nil {
					return err
				}
				balances.Add(1)
			}
		}()
	}()
	stopChurn := sync.OnceValue(func() error {
		close(stop)
		return <-churnDone
	})
	t.Cleanup(func() { stopChurn() })

	// Slowly: a backup host pulling the stream while the balances run.
	// Half of it during the first two balances, the rest after more: by
	// then the blocks the stream's index was made from have moved and
	// their old places hold other data.
	for len(got) < len(want)/2 && balances.Load() < 2 {
		readSome(1)
		time.Sleep(20 * time.Millisecond)
	}
	var sends [][]byte
	for len(sends) < 3 || balances.Load() < 4 {
		sends = append(sends, sendfsSend(t, bfs.Loops, "snaps/s1", ""))
	}
	readSome(len(want))
	if err := stopChurn(); err != nil {
		t.Fatalf("balance, deletions and writes: %v", err)
	}
	t.Logf("%d full balances while reading %d bytes through the mount and sending 3 times", balances.Load(), len(got))
	if balances.Load() == 0 {
		t.Fatal("no balance completed while the stream was read")
	}
	sameBytes(t, "stream read through the mount during balances", want, got)
	for i, s := range sends {
		sameBytes(t, fmt.Sprintf("sendfs send %d during balances", i), want, s)
	}
	if strings.Contains(m.stderr.String(), "level=ERROR") || strings.Contains(m.stderr.String(), "DATA RACE") {
		t.Errorf("the mount logged errors:\n%s", m.stderr)
	}
}

// TestSizeCacheAcrossRenames: sizes kept in --cache-dir are keyed by
// everything that shapes a stream, so a snapshot renamed between two mounts
// sharing the cache is served with its true size and bytes. An entry under
// the right key but with a wrong size (what a key that missed something
// would give) is caught by the first read that reaches the end: EIO, then
// the true size. An entry written by a build with another output version
// is never looked at.
func TestSizeCacheAcrossRenames(t *testing.T) {
	bfs, _ := liveFS(t)
	cache := t.TempDir()

	m := startMount(t, bfs.Images, "--cache-dir", cache, "--refresh", "0")
	old := checkServed(t, m, bfs.Images, "snaps/s1", "")
	stopMount(t, m)

	mustRename(t, bfs.path("snaps/s1"), bfs.path("snaps/daily.10-renamed"))
	syncFS(t, bfs)
	m = startMount(t, bfs.Images, "--cache-dir", cache, "--refresh", "0")
	renamed := checkServed(t, m, bfs.Images, "snaps/daily.10-renamed", "")
	if len(renamed) == len(old) {
		t.Fatalf("the rename did not change the stream's length (%d): the test shows nothing", len(old))
	}
	stopMount(t, m)

	// A wrong size under the stream's own key, and one under the key of
	// another output version.
	key := streamKey(t, bfs.Images, "snaps/daily.10-renamed")
	otherBuild := strings.Replace(key, fmt.Sprintf("sendfs-stream/%d ", sendgen.OutputVersion), fmt.Sprintf("sendfs-stream/%d ", sendgen.OutputVersion-1), 1)
	if otherBuild == key {
		t.Fatalf("key %q does not start with the output version", key)
	}
	other := t.TempDir()
	writeSizeEntry(t, other, otherBuild, int64(len(renamed))-100)
	m = startMount(t, bfs.Images, "--cache-dir", other, "--refresh", "0")
	checkServed(t, m, bfs.Images, "snaps/daily.10-renamed", "")
	stopMount(t, m)

	forged := t.TempDir()
	writeSizeEntry(t, forged, key, int64(len(renamed))-100)
	m = startMount(t, bfs.Images, "--cache-dir", forged, "--refresh", "0")
	p := m.streamPath("snaps/daily.10-renamed", "")
	st, err := os.Stat(p)
	must(t, err)
	if st.Size() != int64(len(renamed))-100 {
		t.Fatalf("st_size %d: the forged entry was not used, the test shows nothing", st.Size())
	}
	if b, err := os.ReadFile(p); err == nil || !errors.Is(err, syscall.EIO) {
		t.Fatalf("reading a stream longer than its st_size: %d bytes, %v; want EIO\n%s", len(b), err, m.stderr)
	}
	if m.waitLog(t, "not the", 5*time.Second) == "" {
		t.Errorf("no log line about the size:\n%s", m.stderr)
	}
	waitFor(t, "true size after the failed read", func() bool {
		st, err := os.Stat(p)
		return err == nil && st.Size() == int64(len(renamed))
	})
	checkServed(t, m, bfs.Images, "snaps/daily.10-renamed", "")
}

// stopMount unmounts a sendfs mount and waits for it to exit cleanly.
func stopMount(t testing.TB, m *sendfsMount) {
	t.Helper()
	run(t, "fusermount3", "-u", m.dir)
	if err := m.waitExit(t, 10*time.Second); err != nil {
		t.Fatalf("sendfs mount: %v\n%s", err, m.stderr)
	}
}

// streamKey is the cache key of subvol's full stream.
func streamKey(t testing.TB, devs []string, subvol string) string {
	t.Helper()
	fsys, err := btrfsread.Open(devs...)
	must(t, err)
	defer fsys.Close()
	sv, err := fsys.FindSubvolume(subvol)
	must(t, err)
	s, err := sendgen.NewStream(sv, nil, sendgen.Options{})
	must(t, err)
	return s.CacheKey()
}

// writeSizeEntry writes a size cache entry as sendfs mount does (the file
// format is part of what the test pins down).
func writeSizeEntry(t testing.TB, dir, key string, size int64) {
	t.Helper()
	sum := sha256.Sum256([]byte(key))
	name := filepath.Join(dir, hex.EncodeToString(sum[:16]))
	must(t, os.WriteFile(name, fmt.Appendf(nil, "sendfs stream size v1\n%s\n%d\n", key, size), 0o600))
}

// TestBalanceUnderKeptPlan: a mount that follows the filesystem keeps
// each stream's key from its first view, so after balances the plan it
// wrote while counting names extents where they were before. Reads in any
// order after the balances still give sendfs send's bytes (read through
// the view the plan was made at, or rejected: TestPlanRejectedAfterMove).
func TestBalanceUnderKeptPlan(t *testing.T) {
	requireFUSE(t)
	bfs := newFS(t, fsOpts{Size: 1 << 30})
	sv := subvolCreate(t, bfs, "sv")
	for i := range 4 {
		writeFile(t, filepath.Join(sv, fmt.Sprintf("random%d", i)), random(6<<20, uint64(i)))
	}
	nfiles(t, sv, "small-", 1000)
	snapshotRO(t, bfs, "sv", "snaps/s1")
	syncFS(t, bfs)
	want := sendfsSend(t, bfs.Loops, "snaps/s1", "")
	cache := t.TempDir()
	m := startMount(t, bfs.Loops, "--cache-dir", cache, "--refresh", "200ms")
	m.waitLog(t, "stream sizes ready", 2*time.Minute)
	if plans, _ := filepath.Glob(filepath.Join(cache, "plans", "*.plan")); len(plans) == 0 {
		t.Fatal("the counting pass kept no plan: the test shows nothing")
	}
	// Balances with writes between them, so that the old places of the
	// snapshot's blocks hold other data by the end.
	for i := range 3 {
		writeFile(t, filepath.Join(sv, fmt.Sprintf("after%d", i)), random(24<<20, uint64(99+i)))
		run(t, "btrfs", "balance", "start", "--full-balance", bfs.Mnt)
	}
	syncFS(t, bfs)
	time.Sleep(time.Second) // several refreshes: the mount sees the balances

	f, err := os.Open(m.streamPath("snaps/s1", ""))
	must(t, err)
	defer f.Close()
	got := make([]byte, 4096)
	_, err = f.ReadAt(got, 0)
	must(t, err)
	sameBytes(t, "the stream's first page after a balance", want[:4096], got)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		off := rng.Int64N(int64(len(want)))
		n := min(int64(1+rng.IntN(256<<10)), int64(len(want))-off)
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatalf("read of %d bytes at %d after a balance: %v\n%s", n, off, err, m.stderr)
		}
		sameBytes(t, fmt.Sprintf("%d bytes at %d after a balance", n, off), want[off:off+n], buf)
	}
}
