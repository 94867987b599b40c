package test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sendfs/internal/mountinfo"
	"sendfs/internal/testenv"
)

// The FUSE view, through a real `sendfs mount` of an image made here: every
// stream file must give exactly the bytes of `sendfs send`, to every tool
// that reads it, and btrfs receive of them must rebuild the snapshots.

// sendfsMount is a running `sendfs mount` process. Its stderr is kept and
// printed when the test fails; a mount that hangs is ended with SIGQUIT so
// that the stacks of its goroutines are printed too (dump).
type sendfsMount struct {
	dir     string
	cmd     *exec.Cmd
	stderr  *syncBuffer
	exited  chan struct{} // closed when the process has exited
	err     error         // its exit error, valid once exited is closed
	printed atomic.Bool   // stderr was printed already (by dump's callers)
}

// syncBuffer collects a process's stderr while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// requireFUSE fails under CI=true, or skips, when FUSE mounts are impossible.
func requireFUSE(t testing.TB) {
	t.Helper()
	requireRoot(t)
	msg := ""
	if _, err := os.Stat("/dev/fuse"); err != nil {
		msg = "no /dev/fuse"
	} else if _, err := exec.LookPath("fusermount3"); err != nil {
		msg = "fusermount3 not installed (make deps)"
	}
	if msg != "" {
		testenv.Unavailable(t, "FUSE: "+msg)
	}
}

// startMount runs `sendfs mount [args] IMAGE... DIR` on a fresh directory and
// waits until the mount is there. t.Cleanup unmounts (lazily) and kills it.
func startMount(t testing.TB, images []string, args ...string) *sendfsMount {
	t.Helper()
	m := &sendfsMount{dir: filepath.Join(t.TempDir(), "streams"), stderr: &syncBuffer{}, exited: make(chan struct{})}
	must(t, os.Mkdir(m.dir, 0o755))
	args = append(append(append([]string{"mount"}, args...), images...), m.dir)
	m.cmd = exec.Command(sendfsBinary(t), args...)
	m.cmd.Stderr = m.stderr
	must(t, m.cmd.Start())
	go func() {
		m.err = m.cmd.Wait()
		close(m.exited)
	}()
	watchdog := m.dumpBeforeTimeout(t)
	t.Cleanup(func() {
		watchdog.Stop()
		if isMounted(m.dir) {
			runErr("fusermount3", "-u", "-z", m.dir)
		}
		if !m.end(5 * time.Second) {
			t.Errorf("sendfs mount %s did not exit after SIGKILL: one of its threads waits for a FUSE request", m.dir)
		}
		if t.Failed() && !m.printed.Swap(true) {
			t.Logf("stderr of sendfs mount %s:\n%s", m.dir, m.stderr)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !isMounted(m.dir) {
		select {
		case <-m.exited:
			t.Fatalf("sendfs mount exited before mounting: %v\n%s", m.err, m.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sendfs mount did not mount %s in 30s\n%s", m.dir, m.stderr)
		}
	}
	return m
}

// dump ends the mount with SIGQUIT, on which the Go runtime prints the
// stack of every goroutine, and returns its stderr with them. Requests
// waiting for the mount then fail (its connection is gone).
func (m *sendfsMount) dump() string {
	m.printed.Store(true)
	m.cmd.Process.Signal(syscall.SIGQUIT)
	m.cmd.Process.Signal(syscall.SIGCONT) // were it stopped
	m.end(30 * time.Second)
	return m.stderr.String()
}

// end waits up to grace for the mount process to exit, then kills it, and
// reports whether it exited. It may not: a thread of it waiting for a
// request to its own FUSE mount (go-fuse opens a file there while
// mounting) outlives SIGKILL until the connection is aborted.
func (m *sendfsMount) end(grace time.Duration) bool {
	select {
	case <-m.exited:
		return true
	case <-time.After(grace):
	}
	m.cmd.Process.Kill()
	select {
	case <-m.exited:
		return true
	case <-time.After(30 * time.Second):
		return false
	}
}

// replyBound is how long a test waits for the replies of a mount (within)
// before it takes the mount to hang; no test's reads come near it.
const replyBound = 5 * time.Minute

// within runs fn, which waits for replies of the mount. If fn has not
// returned after d the mount is taken to hang: the test fails with the
// mount's goroutines (dump), which also makes fn's requests fail, so fn
// returns.
func (m *sendfsMount) within(t testing.TB, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
		return
	case <-time.After(d):
	}
	t.Errorf("%s: no reply from sendfs mount in %v; its stderr, with the stack of every goroutine:\n%s", what, d, m.dump())
	<-done
}

// dumpBeforeTimeout arms a dump of the mount's goroutines shortly before
// the test binary's -timeout, which would end the test without printing
// the mount's stderr. It goes to the test binary's stderr: go test prints
// it with the timeout's panic.
func (m *sendfsMount) dumpBeforeTimeout(t testing.TB) *time.Timer {
	left := time.Duration(1<<63 - 1)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok {
			left = time.Until(deadline)
		}
	}
	return time.AfterFunc(left-min(time.Minute, left/10), func() {
		fmt.Fprintf(os.Stderr, "%s is about to time out with sendfs mount %s running; its stderr, with the stack of every goroutine:\n%s\n", t.Name(), m.dir, m.dump())
	})
}

// isMounted reports whether dir is a mount point.
func isMounted(dir string) bool {
	_, ok, _ := mountinfo.Find(dir)
	return ok
}

// waitExit waits for the mount process to end and returns its exit error.
func (m *sendfsMount) waitExit(t testing.TB, within time.Duration) error {
	t.Helper()
	select {
	case <-m.exited:
		return m.err
	case <-time.After(within):
		t.Fatalf("sendfs mount still running %v later\n%s", within, m.stderr)
		return nil
	}
}

// waitLog returns the first line of the mount's stderr that contains substr,
// waiting for it (stderr reaches the test through a pipe and a goroutine),
// or "" if none came within the time given.
func (m *sendfsMount) waitLog(t testing.TB, substr string, within time.Duration) string {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		for _, line := range strings.Split(m.stderr.String(), "\n") {
			if strings.Contains(line, substr) {
				return line
			}
		}
		if time.Now().After(deadline) {
			return ""
		}
	}
}

// path is a path in the mount; name parts are joined with '/'.
func (m *sendfsMount) path(parts ...string) string {
	return filepath.Join(append([]string{m.dir}, parts...)...)
}

// streamPath is the stream file of snapshot child (incremental from parent
// unless ""), both paths from the top level.
func (m *sendfsMount) streamPath(child, parent string) string {
	if parent == "" {
		return m.path("snapshots", subvolName(child), "full.stream")
	}
	return m.path("snapshots", subvolName(child), "from", subvolName(parent)+".stream")
}

// subvolName is the name under snapshots/ of the subvolume at path p, as
// the README documents it (for names short enough to need no hash): the
// components last first, joined by " ‹ "; the path escaped (%25, %2F,
// %E2%80%B9) when a component holds '%' or '‹'.
func subvolName(p string) string {
	if strings.ContainsAny(p, "%‹") {
		return strings.NewReplacer("%", "%25", "/", "%2F", "‹", "%E2%80%B9").Replace(p)
	}
	comps := strings.Split(p, "/")
	slices.Reverse(comps)
	return strings.Join(comps, " ‹ ")
}

// legacyName is the escaped name of earlier versions, still answered.
func legacyName(p string) string {
	return strings.ReplaceAll(strings.ReplaceAll(p, "%", "%25"), "/", "%2F")
}

// output runs a command and returns its stdout, failing the test on error.
func output(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, lastLines(stderr.String(), 20))
	}
	return stdout.Bytes()
}

// sameBytes reports a difference between want and got by its first offset.
func sameBytes(t testing.TB, what string, want, got []byte) bool {
	t.Helper()
	if bytes.Equal(want, got) {
		return true
	}
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	t.Errorf("%s: %d bytes, want %d; first difference at offset %d", what, len(got), len(want), i)
	return false
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}

// fuseImage is the filesystem the FUSE tests mount: lineage data (a.1 → a.3,
// with a nested path and a '%' in a name), an unrelated subvolume, 50
// snapshots of one more lineage, and a victim whose data is corrupted last.
type fuseImage struct {
	fs    *btrfsFS
	many  []string // the 50 snapshots, in creation order
	bigSz int
}

const victimSeed = 0x7c71

func buildFuseImage(t *testing.T) *fuseImage {
	img := &fuseImage{fs: newFS(t, fsOpts{Size: 2 << 30}), bigSz: 6<<20 + 12345}
	fs := img.fs
	data := subvolCreate(t, fs, "data")
	writeFile(t, filepath.Join(data, "big"), random(img.bigSz, 1))
	writeFile(t, filepath.Join(data, "small"), []byte("hello\n"))
	mustMkdir(t, filepath.Join(data, "dir"))
	writeFile(t, filepath.Join(data, "dir", "text"), patterned(300000, 2))
	mustLink(t, filepath.Join(data, "small"), filepath.Join(data, "dir", "small-link"))
	mustSymlink(t, "../big", filepath.Join(data, "dir", "sym"))
	setXattr(t, filepath.Join(data, "small"), "user.note", []byte("x"))
	snapshotRO(t, fs, "data", "snaps/a.1")

	writeAt(t, filepath.Join(data, "big"), 1<<20, random(200000, 3))
	mustRename(t, filepath.Join(data, "dir", "text"), filepath.Join(data, "text2"))
	writeFile(t, filepath.Join(data, "new"), random(500000, 4))
	snapshotRO(t, fs, "data", "snaps/a.2")

	mustRemove(t, filepath.Join(data, "new"))
	punchHole(t, filepath.Join(data, "big"), 2<<20, 1<<20)
	snapshotRO(t, fs, "data", "snaps/50%/a.3")

	other := subvolCreate(t, fs, "other")
	writeFile(t, filepath.Join(other, "f"), random(100000, 5))
	snapshotRO(t, fs, "other", "snaps/other.1")

	victim := subvolCreate(t, fs, "victim")
	writeFile(t, filepath.Join(victim, "v"), random(1<<20, victimSeed))
	snapshotRO(t, fs, "victim", "snaps/victim.1")

	many := subvolCreate(t, fs, "many")
	for i := range 50 {
		writeFile(t, filepath.Join(many, fmt.Sprintf("f%02d", i)), patterned(1000+i, uint64(i)))
		name := fmt.Sprintf("snaps/m.%02d", i)
		snapshotRO(t, fs, "many", name)
		img.many = append(img.many, name)
	}
	// The images stay as they are while sendfs reads them; the read-only
	// kernel mount is what the received trees are compared with.
	remountRO(t, fs)
	return img
}

func TestFUSE(t *testing.T) {
	requireFUSE(t)
	img := buildFuseImage(t)
	fs := img.fs
	cacheDir := t.TempDir()
	m := startMount(t, fs.Images, "--cache-dir", cacheDir)

	t.Run("Namespace", func(t *testing.T) { checkNamespace(t, m, img) })
	t.Run("Receive", func(t *testing.T) { checkReceive(t, m, fs) })
	t.Run("Tools", func(t *testing.T) { checkTools(t, m, fs) })
	t.Run("ManyParents", func(t *testing.T) { checkManyParents(t, m, img) })
	t.Run("ReadOnly", func(t *testing.T) { checkReadOnly(t, m) })
	t.Run("BadMountpoint", func(t *testing.T) { checkBadMountpoint(t, m, fs) })
	t.Run("CorruptData", func(t *testing.T) { checkCorruptData(t, m, fs) })
	t.Run("SIGTERM", func(t *testing.T) { checkSIGTERM(t, m) })
	t.Run("CompressedData", func(t *testing.T) { checkStreamOptions(t, fs, cacheDir) })
}

// checkStreamOptions: a mount with --compressed-data, sharing the size cache
// of a protocol-1 mount, serves the streams of sendfs send
// --compressed-data, with their own sizes.
func checkStreamOptions(t *testing.T, fs *btrfsFS, cacheDir string) {
	m := startMount(t, fs.Images, "--cache-dir", cacheDir, "--compressed-data")
	for _, pair := range [][2]string{{"snaps/a.1", ""}, {"snaps/a.2", "snaps/a.1"}, {"snaps/50%/a.3", "snaps/a.2"}} {
		want := sendfsSend(t, fs.Images, pair[0], pair[1], "--compressed-data")
		st, err := os.Stat(m.streamPath(pair[0], pair[1]))
		must(t, err)
		if st.Size() != int64(len(want)) {
			t.Errorf("%s from %q: st_size %d, the stream has %d bytes", pair[0], pair[1], st.Size(), len(want))
		}
		sameBytes(t, pair[0]+" from "+pair[1], want, output(t, "cat", m.streamPath(pair[0], pair[1])))
	}
	full := output(t, "cat", m.streamPath("snaps/a.1", ""))
	inc := output(t, "cat", m.streamPath("snaps/50%/a.3", "snaps/a.1"))
	compareTrees(t, fs.path("snaps/50%/a.3"), receive(t, full, inc))
}

func checkNamespace(t *testing.T, m *sendfsMount, img *fuseImage) {
	ls := func(parts ...string) string {
		ents, err := os.ReadDir(m.path(parts...))
		must(t, err)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return strings.Join(names, "|")
	}
	if got, want := ls(), "by-id|by-uuid|snapshots"; got != want {
		t.Errorf("ls / = %q, want %q", got, want)
	}
	if got := ls("snapshots"); !strings.HasPrefix(got, "a.1 ‹ snaps|a.2 ‹ snaps|m.00 ‹ snaps|") ||
		!strings.HasSuffix(got, "|m.49 ‹ snaps|other.1 ‹ snaps|snaps%2F50%25%2Fa.3|victim.1 ‹ snaps") {
		t.Errorf("ls snapshots = %q", got)
	}
	if got, want := ls("snapshots", "a.2 ‹ snaps", "from"), "a.1 ‹ snaps.stream|snaps%2F50%25%2Fa.3.stream"; got != want {
		t.Errorf("ls a.2/from = %q, want %q", got, want)
	}
	// The escaped names of earlier versions still work.
	sameBytes(t, "a.2 from a.1 by its escaped name", readFile(t, m.streamPath("snaps/a.2", "snaps/a.1")),
		readFile(t, m.path("snapshots", legacyName("snaps/a.2"), "from", legacyName("snaps/a.1")+".stream")))
	if got := ls("snapshots", "other.1 ‹ snaps", "from"); got != "" {
		t.Errorf("ls other.1/from = %q, want nothing", got)
	}
	// by-id and by-uuid lead to the same directory.
	var subvolID, uuid string
	for _, line := range strings.Split(string(output(t, "btrfs", "subvolume", "show", img.fs.path("snaps/a.2"))), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Subvolume ID:"); ok {
			subvolID = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(strings.TrimSpace(line), "UUID:"); ok {
			uuid = strings.TrimSpace(v)
		}
	}
	for _, l := range []string{m.path("by-id", subvolID), m.path("by-uuid", uuid)} {
		if target, err := os.Readlink(l); err != nil || target != "../snapshots/a.2 ‹ snaps" {
			t.Errorf("readlink %s = %q, %v", l, target, err)
		}
		if _, err := os.Stat(filepath.Join(l, "full.stream")); err != nil {
			t.Errorf("stat through %s: %v", l, err)
		}
	}
	// A parent of another lineage is not listed but works by name.
	want := sendfsSend(t, img.fs.Images, "snaps/a.2", "snaps/other.1")
	sameBytes(t, "unlisted parent other.1 of a.2", want, readFile(t, m.streamPath("snaps/a.2", "snaps/other.1")))
	for _, p := range []string{m.streamPath("snaps/a.2", "snaps/a.2"), m.streamPath("snaps/a.2", "data"), m.path("snapshots", "data")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s: %v, want not exist", p, err)
		}
	}
	// Attributes: owner-only modes, stable mtime (the snapshot's creation).
	var st syscall.Stat_t
	must(t, syscall.Stat(m.streamPath("snaps/a.1", ""), &st))
	var snapSt syscall.Stat_t
	must(t, syscall.Stat(img.fs.path("snaps/a.1"), &snapSt))
	if st.Mode != syscall.S_IFREG|0o400 || st.Nlink != 1 || st.Uid != 0 || st.Blocks != (st.Size+511)/512 {
		t.Errorf("stat full.stream: mode %o nlink %d uid %d blocks %d size %d", st.Mode, st.Nlink, st.Uid, st.Blocks, st.Size)
	}
	if d := st.Mtim.Sec - snapSt.Ctim.Sec; d < -2 || d > 2 {
		t.Errorf("full.stream mtime %d, snapshot made at %d", st.Mtim.Sec, snapSt.Ctim.Sec)
	}
	must(t, syscall.Stat(m.path("snapshots"), &st))
	if st.Mode != syscall.S_IFDIR|0o500 {
		t.Errorf("snapshots/ mode %o", st.Mode)
	}
}

// checkReceive: cat full.stream | btrfs receive, then the incrementals on
// top, rebuild the snapshots exactly; btrfs receive -f straight from the
// mount too.
func checkReceive(t *testing.T, m *sendfsMount, fs *btrfsFS) {
	full := output(t, "cat", m.streamPath("snaps/a.1", ""))
	inc2 := output(t, "cat", m.streamPath("snaps/a.2", "snaps/a.1"))
	inc3 := output(t, "cat", m.streamPath("snaps/50%/a.3", "snaps/a.2"))
	sameBytes(t, "a.1 full", sendfsSend(t, fs.Images, "snaps/a.1", ""), full)
	sameBytes(t, "a.2 from a.1", sendfsSend(t, fs.Images, "snaps/a.2", "snaps/a.1"), inc2)
	compareTrees(t, fs.path("snaps/a.1"), receive(t, full))
	compareTrees(t, fs.path("snaps/a.2"), receive(t, full, inc2))
	compareTrees(t, fs.path("snaps/50%/a.3"), receive(t, full, inc2, inc3))

	r := newReceiver(t)
	dir := r.fs.path("direct")
	mustMkdir(t, dir)
	run(t, "btrfs", "receive", "-f", m.streamPath("snaps/other.1", ""), dir)
	compareTrees(t, fs.path("snaps/other.1"), filepath.Join(dir, "other.1"))
}

// checkTools: every way of reading a stream gives the bytes of sendfs send.
func checkTools(t *testing.T, m *sendfsMount, fs *btrfsFS) {
	src := m.streamPath("snaps/a.2", "")
	want := sendfsSend(t, fs.Images, "snaps/a.2", "")
	st, err := os.Stat(src)
	must(t, err)
	if st.Size() != int64(len(want)) {
		t.Fatalf("stat size %d, sendfs send wrote %d bytes", st.Size(), len(want))
	}

	// dd first, so that its random offsets reach the generator, not the
	// page cache.
	rng := rand.New(rand.NewPCG(7, 8))
	const bs = 4096
	for range 12 {
		skip := rng.IntN(len(want)/bs + 1)
		count := 1 + rng.IntN(400)
		got := output(t, "dd", "if="+src, fmt.Sprintf("bs=%d", bs), fmt.Sprintf("skip=%d", skip), fmt.Sprintf("count=%d", count), "status=none")
		from := min(skip*bs, len(want))
		sameBytes(t, fmt.Sprintf("dd skip=%d count=%d", skip, count), want[from:min(from+count*bs, len(want))], got)
	}

	out := t.TempDir()
	dst := func(name string) string { return filepath.Join(out, name) }
	run(t, "cp", src, dst("cp"))
	sameBytes(t, "cp", want, readFile(t, dst("cp")))
	run(t, "rsync", "-a", src, dst("rsync"))
	sameBytes(t, "rsync -a", want, readFile(t, dst("rsync")))
	writeFile(t, dst("inplace"), random(len(want)/2, 9))
	run(t, "rsync", "-a", "--inplace", src, dst("inplace"))
	sameBytes(t, "rsync -a --inplace", want, readFile(t, dst("inplace")))
	tarred := output(t, "sh", "-c", `tar cf - -C "$1" full.stream | tar xf - -O`, "sh", filepath.Dir(src))
	sameBytes(t, "tar c", want, tarred)
	run(t, "python3", "-c", "import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])", src, dst("shutil"))
	sameBytes(t, "shutil.copyfile", want, readFile(t, dst("shutil")))

	// mmap and concurrent readers on streams nobody read yet.
	mmapSrc := m.streamPath("snaps/a.1", "")
	mmapped := output(t, "python3", "-c", `import mmap, sys
f = open(sys.argv[1], "rb")
m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
sys.stdout.buffer.write(m[len(m)//2:] + m[:len(m)//2])`, mmapSrc)
	wantA1 := sendfsSend(t, fs.Images, "snaps/a.1", "")
	half := len(wantA1) / 2
	sameBytes(t, "mmap", append(append([]byte{}, wantA1[half:]...), wantA1[:half]...), mmapped)

	both := m.streamPath("snaps/50%/a.3", "")
	wantA3 := sendfsSend(t, fs.Images, "snaps/50%/a.3", "")
	var wg sync.WaitGroup
	got := make([][]byte, 2)
	errs := make([]error, 2)
	for i := range got {
		wg.Go(func() { got[i], errs[i] = exec.Command("cat", both).Output() })
	}
	wg.Wait()
	for i := range got {
		must(t, errs[i])
		sameBytes(t, fmt.Sprintf("concurrent reader %d", i), wantA3, got[i])
	}
}

// checkManyParents: ls -l of a from/ with 49 entries shows every size.
func checkManyParents(t *testing.T, m *sendfsMount, img *fuseImage) {
	last := img.many[len(img.many)-1]
	dir := filepath.Dir(m.streamPath(last, img.many[0]))
	listing := string(output(t, "ls", "-l", dir))
	files := 0
	for _, line := range strings.Split(listing, "\n") {
		if strings.HasPrefix(line, "-r--------") {
			files++
		} else if strings.HasPrefix(line, "-?") {
			t.Errorf("ls -l without attributes: %q", line)
		}
	}
	if files != len(img.many)-1 {
		t.Errorf("ls -l %s lists %d streams, want %d:\n%s", dir, files, len(img.many)-1, listing)
	}
	for _, parent := range []string{img.many[0], img.many[len(img.many)-2]} {
		st, err := os.Stat(m.streamPath(last, parent))
		must(t, err)
		size, err := sendfsSize(t, img.fs.Images, last, parent)
		must(t, err)
		if st.Size() != size {
			t.Errorf("%s from %s: st_size %d, sendfs send --size %d", last, parent, st.Size(), size)
		}
	}
}

func checkReadOnly(t *testing.T, m *sendfsMount) {
	file := m.streamPath("snaps/a.1", "")
	for name, op := range map[string]func() error{
		"open O_WRONLY": func() error { f, err := os.OpenFile(file, os.O_WRONLY, 0); f.Close(); return err },
		"open O_RDWR":   func() error { f, err := os.OpenFile(file, os.O_RDWR, 0); f.Close(); return err },
		"truncate":      func() error { return os.Truncate(file, 0) },
		"create":        func() error { f, err := os.Create(m.path("snapshots", "x")); f.Close(); return err },
		"unlink":        func() error { return os.Remove(file) },
		"chmod":         func() error { return os.Chmod(file, 0o644) },
	} {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", name, err)
		}
	}
}

func checkBadMountpoint(t *testing.T, m *sendfsMount, fs *btrfsFS) {
	full := t.TempDir()
	writeFile(t, filepath.Join(full, "x"), nil)
	for dir, want := range map[string]string{full: "not empty", m.dir: "busy"} {
		_, err := runErr(sendfsBinary(t), append(append([]string{"mount"}, fs.Images...), dir)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("sendfs mount on %s: %v, want an error saying %q", dir, err, want)
		}
	}
}

// checkCorruptData damages one data block of the victim snapshot in the
// image: its stream fails with EIO and a log line, the others still read.
func checkCorruptData(t *testing.T, m *sendfsMount, fs *btrfsFS) {
	off := findInImage(t, fs.Images[0], random(4096, victimSeed))
	f, err := os.OpenFile(fs.Images[0], os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), off)
	must(t, err)
	must(t, f.Close())

	victim := m.streamPath("snaps/victim.1", "")
	if _, err := os.ReadFile(victim); !errors.Is(err, syscall.EIO) {
		t.Errorf("read of the corrupt stream: %v, want EIO", err)
	}
	if line := m.waitLog(t, "victim.1 ‹ snaps/full.stream", 5*time.Second); line != "" {
		t.Logf("sendfs logged: %s", line)
	} else {
		t.Errorf("no log line names the corrupt stream:\n%s", m.stderr)
	}
	want := sendfsSend(t, fs.Images, "snaps/m.07", "")
	sameBytes(t, "another stream after the failure", want, readFile(t, m.streamPath("snaps/m.07", "")))
}

// findInImage returns the offset of pattern in the image, searching only its
// data regions (the image is sparse).
func findInImage(t *testing.T, image string, pattern []byte) int64 {
	t.Helper()
	f, err := os.Open(image)
	must(t, err)
	defer f.Close()
	const chunk = 4 << 20
	buf := make([]byte, chunk+len(pattern))
	var pos int64
	for {
		data, err := f.Seek(pos, 3 /* SEEK_DATA */)
		if err != nil {
			t.Fatalf("pattern not found in %s", image)
		}
		hole, err := f.Seek(data, 4 /* SEEK_HOLE */)
		must(t, err)
		for at := data; at < hole; at += chunk {
			n, err := f.ReadAt(buf, at)
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if i := bytes.Index(buf[:n], pattern); i >= 0 {
				return at + int64(i)
			}
		}
		pos = hole
	}
}

// checkSIGTERM: with a stream still open, SIGTERM removes the mount at once
// (lazily); the open file keeps reading; the process exits 0 when it is
// closed, leaving nothing mounted.
func checkSIGTERM(t *testing.T, m *sendfsMount) {
	f, err := os.Open(m.streamPath("snaps/m.01", ""))
	must(t, err)
	defer f.Close()
	head := make([]byte, 100)
	_, err = f.ReadAt(head, 0)
	must(t, err)
	must(t, m.cmd.Process.Signal(syscall.SIGTERM))
	deadline := time.Now().Add(10 * time.Second)
	for isMounted(m.dir) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if isMounted(m.dir) {
		t.Fatalf("still mounted 10s after SIGTERM\n%s", m.stderr)
	}
	tail := make([]byte, 100)
	if _, err := f.ReadAt(tail, 1000); err != nil {
		t.Errorf("read of a file kept open across the unmount: %v", err)
	}
	select {
	case <-m.exited:
		t.Errorf("sendfs exited while a stream was still open: %v", m.err)
	case <-time.After(200 * time.Millisecond):
	}
	f.Close()
	if err := m.waitExit(t, 10*time.Second); err != nil {
		t.Errorf("sendfs mount after SIGTERM: %v\n%s", err, m.stderr)
	}
}

// TestFUSEAccess: only the mounting user can read the mount, also with
// --allow-other (which must bring default_permissions); fusermount3 -u from
// outside ends sendfs mount with status 0.
func TestFUSEAccess(t *testing.T) {
	requireFUSE(t)
	fs := newFS(t, fsOpts{Size: 1 << 30})
	writeFile(t, fs.path("f"), []byte("secret"))
	snapshotRO(t, fs, "", "s")
	unmount(t, fs)
	for _, args := range [][]string{{"--cache-dir", ""}, {"--cache-dir", "", "--allow-other"}} {
		m := startMount(t, fs.Images, args...)
		stream := m.streamPath("s", "")
		if _, err := os.Stat(stream); err != nil {
			t.Errorf("%v: stat by the owner: %v", args, err)
		}
		out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", stream).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permission denied") {
			t.Errorf("%v: cat by uid 65534: %v %q, want Permission denied", args, err, out)
		}
		opts := mountOptions(t, m.dir)
		if allow := strings.Contains(opts, "allow_other"); allow != (len(args) == 3) || (allow && !strings.Contains(opts, "default_permissions")) {
			t.Errorf("%v: mount options %q", args, opts)
		}
		run(t, "fusermount3", "-u", m.dir)
		if err := m.waitExit(t, 10*time.Second); err != nil {
			t.Errorf("sendfs mount after fusermount3 -u: %v\n%s", err, m.stderr)
		}
	}
}

// mountOptions returns the mount and super options of the mount at dir.
func mountOptions(t *testing.T, dir string) string {
	t.Helper()
	m, ok, err := mountinfo.Find(dir)
	if err != nil || !ok {
		t.Fatalf("%s is not mounted (%v)", dir, err)
	}
	return m.Options
}
