package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"sendfs/btrfsread"
	"sendfs/internal/testenv"
)

// These tests mount the tree with generated stream bytes in place of
// sendgen, to check the FUSE side alone; test/fuse_test.go checks the real
// streams against btrfs receive.

// fakeStream is size bytes of a sequence seeded by key. Reads overlapping
// bad fail.
type fakeStream struct {
	key     string
	size    int64
	bad     [2]int64 // [from, to) that fails to read; empty when equal
	sizeErr error    // what Size fails with
	sized   *atomic.Int64
	readers *atomic.Int64
}

func (s *fakeStream) Size(context.Context) (int64, error) {
	s.sized.Add(1)
	return s.size, s.sizeErr
}
func (s *fakeStream) CacheKey() string { return s.key }
func (s *fakeStream) NewReader(context.Context) (io.ReaderAt, error) {
	s.readers.Add(1)
	return s, nil
}

func (s *fakeStream) ReadAt(p []byte, off int64) (int, error) {
	if off < s.bad[1] && off+int64(len(p)) > s.bad[0] {
		return 0, errors.New("csum mismatch at logical 0x1234")
	}
	n := copy(p, fakeBytes(s.key, s.size)[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func fakeBytes(key string, size int64) []byte {
	b := make([]byte, size)
	r := rand.NewChaCha8([32]byte([]byte(fmt.Sprintf("%-32s", key))))
	r.Read(b)
	return b
}

func testSubvol(id uint64, path string, ro bool, u, parent byte) *btrfsread.Subvolume {
	sv := &btrfsread.Subvolume{ID: id, Path: path}
	if ro {
		sv.Root.Flags = btrfsread.RootSubvolReadOnly
	}
	sv.Root.UUID[0] = u
	sv.Root.ParentUUID[0] = parent
	sv.Root.CTransid = id
	sv.Root.OTime = btrfsread.Timespec{Sec: 1700000000 + id, Nsec: 5}
	return sv
}

// testSubvols: data (writable) with snapshots a/1, a/2 of it, b of a/1,
// an unrelated c%, and the top level.
func testSubvols() []*btrfsread.Subvolume {
	return []*btrfsread.Subvolume{
		testSubvol(256, "data", false, 1, 0),
		testSubvol(257, "a/1", true, 2, 1),
		testSubvol(258, "a/2", true, 3, 1),
		testSubvol(259, "b", true, 4, 2),
		testSubvol(260, "c%", true, 5, 0),
		testSubvol(5, "", true, 9, 0), // the top level: never served
	}
}

type testMount struct {
	dir     string
	root    *Root
	sized   *atomic.Int64 // Size calls
	opened  *atomic.Int64 // streams described (lookups, first opens)
	readers *atomic.Int64 // NewReader calls
	log     *lockedBuffer // the mount's log
}

// lockedBuffer is a bytes.Buffer safe for the mount's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func streamSize(child, parent *btrfsread.Subvolume) int64 {
	if parent == nil {
		return 3<<20 + int64(child.ID)
	}
	return 100_000 + int64(child.ID*1000+parent.ID)
}

func mountTest(t *testing.T, cacheDir string, all bool) *testMount {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Unavailable(t, "needs /dev/fuse: "+err.Error())
	}
	m := &testMount{dir: t.TempDir(), sized: new(atomic.Int64), opened: new(atomic.Int64), readers: new(atomic.Int64), log: &lockedBuffer{}}
	open := func(child, parent *btrfsread.Subvolume) (pairStream, error) {
		m.opened.Add(1)
		key := fmt.Sprint(child.ID)
		if parent != nil {
			key += fmt.Sprint("-", parent.ID)
		}
		s := &fakeStream{key: key, size: streamSize(child, parent), sized: m.sized, readers: m.readers}
		if child.ID == 260 && parent == nil {
			s.bad = [2]int64{2 << 20, 2<<20 + 1}
		}
		if child.ID == 258 && parent != nil && parent.ID == 260 {
			s.sizeErr = errors.New("path too long")
		}
		return s, nil
	}
	m.root = newRoot(testSubvols(), Config{CacheDir: cacheDir, AllSubvolumes: all, Logger: slog.New(slog.NewTextHandler(m.log, nil))}, open)
	server, err := Mount(m.dir, m.root, MountOptions{FsName: "test"})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if _, err := Unmount(server, m.dir); err != nil {
			t.Errorf("unmount: %v", err)
		}
		server.Wait()
		m.root.Close()
	})
	return m
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestNamespace(t *testing.T) {
	m := mountTest(t, "", false)
	check := func(dir string, want ...string) {
		t.Helper()
		if got := names(t, filepath.Join(m.dir, dir)); !slices.Equal(got, want) {
			t.Errorf("ls %s = %q, want %q", dir, got, want)
		}
	}
	check("", "by-id", "by-uuid", "snapshots")
	check("snapshots", "1 ‹ a", "2 ‹ a", "b", "c%25")
	check("snapshots/1 ‹ a", "from", "full.stream")
	check("snapshots/1 ‹ a/from", "2 ‹ a.stream", "b.stream")
	check("snapshots/b/from", "1 ‹ a.stream")
	check("snapshots/c%25/from")
	check("by-id", "257", "258", "259", "260")

	var sfs syscall.Statfs_t
	if err := syscall.Statfs(filepath.Join(m.dir, "snapshots/b/full.stream"), &sfs); err != nil || sfs.Namelen != 255 {
		t.Errorf("statfs: namelen %d, %v", sfs.Namelen, err)
	}
	target, err := os.Readlink(filepath.Join(m.dir, "by-id/259"))
	if err != nil || target != "../snapshots/b" {
		t.Errorf("readlink by-id/259 = %q, %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(m.dir, "by-uuid/04000000-0000-0000-0000-000000000000/full.stream")); err != nil {
		t.Errorf("by-uuid: %v", err)
	}
	// The escaped names of earlier versions are answered, not listed.
	for _, old := range []string{"snapshots/a%2F1/full.stream", "snapshots/b/from/a%2F1.stream", "snapshots/a%2F2/from/a%2F1.stream"} {
		if _, err := os.Stat(filepath.Join(m.dir, old)); err != nil {
			t.Errorf("escaped name of earlier versions: %v", err)
		}
	}
	// Any served subvolume works as a parent by name, except itself.
	if _, err := os.Stat(filepath.Join(m.dir, "snapshots/b/from/c%25.stream")); err != nil {
		t.Errorf("unlisted parent: %v", err)
	}
	for _, bad := range []string{"snapshots/b/from/b.stream", "snapshots/b/from/data.stream", "snapshots/data", "by-id/0259", "snapshots/b/from/1 ‹ a", "snapshots/a%2f1", "snapshots/c%"} {
		if _, err := os.Stat(filepath.Join(m.dir, bad)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s: %v, want not exist", bad, err)
		}
	}
}

func TestAllSubvolumes(t *testing.T) {
	m := mountTest(t, "", true)
	if got, want := names(t, filepath.Join(m.dir, "snapshots/1 ‹ a/from")), []string{"2 ‹ a.stream", "b.stream", "data.stream"}; !slices.Equal(got, want) {
		t.Errorf("from/ = %q, want %q", got, want)
	}
}

func TestStreamFile(t *testing.T) {
	m := mountTest(t, "", false)
	path := filepath.Join(m.dir, "snapshots/a%2F2/from/a%2F1.stream")
	sv := testSubvols()
	want := fakeBytes("258-257", streamSize(sv[2], sv[1]))

	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(want)) || st.Nlink != 1 || st.Mode != syscall.S_IFREG|0o400 ||
		st.Blocks != (st.Size+511)/512 || st.Mtim.Sec != 1700000258 || st.Uid != uint32(os.Getuid()) {
		t.Errorf("stat = %+v", st)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read: %d bytes, %v; want %d bytes", len(got), err, len(want))
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		off := rng.Int64N(int64(len(want)))
		buf := make([]byte, rng.IntN(300_000))
		n, err := f.ReadAt(buf, off)
		if end := min(off+int64(len(buf)), int64(len(want))); !bytes.Equal(buf[:n], want[off:end]) || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", len(buf), off, n, err)
		}
	}
}

// TestStreamReleased: the stream (and the index a reader builds) is shared
// by the open handles and let go with the last close, not kept as long as
// the kernel caches the node.
func TestStreamReleased(t *testing.T) {
	m := mountTest(t, "", false)
	path := filepath.Join(m.dir, "snapshots/b/full.stream")
	f1, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// One description for the lookup, one shared by both opens; no reader
	// before a read.
	if n := m.opened.Load(); n != 2 {
		t.Errorf("%d streams described for a lookup and two opens, want 2", n)
	}
	if n := m.readers.Load(); n != 0 {
		t.Errorf("%d readers made by opens without reads, want 0", n)
	}
	f1.Close()
	f2.Close()
	// RELEASE reaches the server after close returns: reopen until the
	// stream is described anew.
	for deadline := time.Now().Add(5 * time.Second); m.opened.Load() == 2; {
		if time.Now().After(deadline) {
			t.Fatal("the stream is still held 5s after the last close")
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReadOnly(t *testing.T) {
	m := mountTest(t, "", false)
	file := filepath.Join(m.dir, "snapshots/b/full.stream")
	for name, op := range map[string]func() error{
		"open for write": func() error { f, err := os.OpenFile(file, os.O_WRONLY, 0); f.Close(); return err },
		"truncate":       func() error { return os.Truncate(file, 0) },
		"chmod":          func() error { return os.Chmod(file, 0o644) },
		"create":         func() error { f, err := os.Create(filepath.Join(m.dir, "snapshots/b/x")); f.Close(); return err },
		"mkdir":          func() error { return os.Mkdir(filepath.Join(m.dir, "snapshots/x"), 0o700) },
		"remove":         func() error { return os.Remove(file) },
		"rename":         func() error { return os.Rename(file, file+".x") },
	} {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", name, err)
		}
	}
}

func TestReadErrorIsEIO(t *testing.T) {
	m := mountTest(t, "", false)
	_, err := os.ReadFile(filepath.Join(m.dir, "snapshots/c%25/full.stream"))
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("read of a failing stream: %v, want EIO", err)
	}
	if _, err := os.ReadFile(filepath.Join(m.dir, "snapshots/b/full.stream")); err != nil {
		t.Errorf("other stream after a failure: %v", err)
	}
}

// TestSizeErrorLoggedOnce: a stream whose size fails is EIO on every stat,
// and its error is logged once, not once per stat.
func TestSizeErrorLoggedOnce(t *testing.T) {
	m := mountTest(t, "", false)
	p := filepath.Join(m.dir, "snapshots/a%2F2/from/c%25.stream")
	for range 3 {
		if _, err := os.Stat(p); !errors.Is(err, syscall.EIO) {
			t.Fatalf("stat of a stream whose size fails: %v, want EIO", err)
		}
	}
	if n := strings.Count(m.log.String(), "path too long"); n != 1 {
		t.Errorf("the size error was logged %d times:\n%s", n, m.log.String())
	}
}

func TestSizeCacheOnDisk(t *testing.T) {
	cache := t.TempDir()
	m := mountTest(t, cache, false)
	path := "snapshots/b/full.stream"
	if _, err := os.Stat(filepath.Join(m.dir, path)); err != nil {
		t.Fatal(err)
	}
	if n := m.sized.Load(); n != 1 {
		t.Fatalf("%d size computations, want 1", n)
	}
	m2 := mountTest(t, cache, false)
	st, err := os.Stat(filepath.Join(m2.dir, path))
	if err != nil || st.Size() != streamSize(testSubvols()[3], nil) {
		t.Fatalf("stat through a second mount: %v, %v", st, err)
	}
	if n := m2.sized.Load(); n != 0 {
		t.Errorf("second mount computed %d sizes, want 0 (cached on disk)", n)
	}
}

func TestWarm(t *testing.T) {
	m := mountTest(t, "", false)
	m.root.Warm(2)
	// 4 full streams, a/1<->a/2, a/1<->b.
	if n := m.sized.Load(); n != 8 {
		t.Errorf("warm computed %d sizes, want 8", n)
	}
	if _, err := os.Stat(filepath.Join(m.dir, "snapshots/b/from/a%2F1.stream")); err != nil || m.sized.Load() != 8 {
		t.Errorf("lookup after warm: %v, %d computations", err, m.sized.Load())
	}
}

func TestMountName(t *testing.T) {
	long := strings.Repeat("x", 250)
	for in, want := range map[string]string{
		"a":                        "a",
		"snaps/home.2026-11-01":    "home.2026-11-01 ‹ snaps",
		"@/.snapshots/12/snapshot": "snapshot ‹ 12 ‹ .snapshots ‹ @",
		"odd name/\xff\x01":        "\xff\x01 ‹ odd name",
		"50%/x%2F":                 "50%25%2Fx%252F",
		"a‹b/c":                    "a%E2%80%B9b%2Fc",
		"c ‹ b/a":                  "c %E2%80%B9 b%2Fa",
	} {
		if got := mountName(in); got != want {
			t.Errorf("mountName(%q) = %q, want %q", in, got, want)
		}
	}
	// Long names: at most 248 bytes (NAME.stream fits 255), distinct, and
	// cut at a character boundary.
	seen := map[string]string{}
	for _, p := range []string{long, long + "y", "d/" + long, long + "/" + long, strings.Repeat("é", 200), strings.Repeat("é", 200) + "/x"} {
		got := mountName(p)
		if len(got) > maxNameLen || !utf8.ValidString(got) && utf8.ValidString(p) || !strings.Contains(got, "…~") {
			t.Errorf("mountName(%.20q…) = %q (%d bytes)", p, got, len(got))
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%.20q and %.20q share the name %q", p, other, got)
		}
		seen[got] = p
	}
	for in, want := range map[string]string{"a": "a", "a/b": "a%2Fb", "50%/x%2F": "50%25%2Fx%252F"} {
		if got := escapeName(in); got != want {
			t.Errorf("escapeName(%q) = %q, want %q", in, got, want)
		}
		if got, ok := legacyPath(want); !ok || got != in {
			t.Errorf("legacyPath(%q) = %q, %v, want %q", want, got, ok, in)
		}
	}
	for _, bad := range []string{"a%2", "a%41", "%"} {
		if p, ok := legacyPath(bad); ok {
			t.Errorf("legacyPath(%q) = %q, want not an escaped name", bad, p)
		}
	}
}

// TestNameCollision: a subvolume named like another's shortened name gets
// another name (with its id, shortened again); both stay reachable.
func TestNameCollision(t *testing.T) {
	long := strings.Repeat("x", 300)
	svs := []*btrfsread.Subvolume{testSubvol(257, long, true, 1, 0), testSubvol(258, mountName(long), true, 2, 0)}
	c := newCatalog(svs, false)
	a, b := c.byID[257], c.byID[258]
	if a.name == b.name || c.lookupName(a.name) != a || c.lookupName(b.name) != b || len(b.name) > maxNameLen {
		t.Errorf("names %q and %q", a.name, b.name)
	}
	if names := MountNames(svs); names[257] != a.name || names[258] != b.name {
		t.Errorf("MountNames = %v", names)
	}
}

func TestWarmPairs(t *testing.T) {
	var svs []*btrfsread.Subvolume
	for i := range uint64(7) {
		svs = append(svs, testSubvol(300+i, fmt.Sprintf("s%d", i), true, byte(10+i), 1))
	}
	r := newRoot(svs, Config{}, nil)
	defer r.Close()
	pairs := warmPairs(r.catalog().names)
	if len(pairs) != 7+7*warmParents {
		t.Fatalf("%d pairs, want %d", len(pairs), 7+7*warmParents)
	}
	for i, p := range pairs[:7] {
		if p.parent != nil || p.child.name != fmt.Sprintf("s%d", i) {
			t.Errorf("pair %d = %s, want the full streams first", i, p.label())
		}
	}
	// Rank 1: each snapshot's closest parent (ties: the one first by name).
	for i, want := range []string{"s1", "s0", "s1", "s2", "s3", "s4", "s5"} {
		if p := pairs[7+i]; p.parent.name != want {
			t.Errorf("closest parent of %s = %s, want %s", p.child.name, p.parent.name, want)
		}
	}
}
