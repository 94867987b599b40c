package test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// File-system operations used to build scenarios. Each fails the test on
// error, so a scenario never silently builds something else than intended.

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t testing.TB, p string) {
	t.Helper()
	must(t, os.Mkdir(p, 0o755))
}

func mustMkdirAll(t testing.TB, p string) {
	t.Helper()
	must(t, os.MkdirAll(p, 0o755))
}

func writeFile(t testing.TB, p string, data []byte) {
	t.Helper()
	must(t, os.WriteFile(p, data, 0o644))
}

// writeAt writes data at off in p, creating p if needed, without truncating.
func writeAt(t testing.TB, p string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	must(t, err)
	_, err = f.WriteAt(data, off)
	must(t, err)
	must(t, f.Close())
}

func mustTruncate(t testing.TB, p string, size int64) {
	t.Helper()
	must(t, os.Truncate(p, size))
}

func mustLink(t testing.TB, old, new string) {
	t.Helper()
	must(t, os.Link(old, new))
}

func mustSymlink(t testing.TB, target, p string) {
	t.Helper()
	must(t, os.Symlink(target, p))
}

// mustRename is rename(2): unlike os.Rename it may replace an empty
// directory.
func mustRename(t testing.TB, old, new string) {
	t.Helper()
	if err := syscall.Rename(old, new); err != nil {
		t.Fatal(&os.LinkError{Op: "rename", Old: old, New: new, Err: err})
	}
}

func mustRemove(t testing.TB, p string) {
	t.Helper()
	must(t, os.Remove(p))
}

func mustRemoveAll(t testing.TB, p string) {
	t.Helper()
	must(t, os.RemoveAll(p))
}

func mustChmod(t testing.TB, p string, mode os.FileMode) {
	t.Helper()
	// os.Chmod maps setuid/setgid/sticky from os.FileMode bits; take raw
	// permission bits instead so callers can write 0o4755.
	must(t, syscall.Chmod(p, uint32(mode)))
}

func mustLchown(t testing.TB, p string, uid, gid int) {
	t.Helper()
	must(t, os.Lchown(p, uid, gid))
}

// setTimes sets atime and mtime with nanoseconds, not following symlinks.
func setTimes(t testing.TB, p string, atime, mtime time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
}

// mknod makes a fifo, socket or device node (mode includes the S_IF type).
func mknod(t testing.TB, p string, mode uint32, major, minor uint32) {
	t.Helper()
	must(t, unix.Mknod(p, mode, int(unix.Mkdev(major, minor))))
}

func setXattr(t testing.TB, p, name string, value []byte) {
	t.Helper()
	must(t, unix.Lsetxattr(p, name, value, 0))
}

func removeXattr(t testing.TB, p, name string) {
	t.Helper()
	must(t, unix.Lremovexattr(p, name))
}

// fallocate allocates [off, off+length) of p; keepSize leaves the size alone.
func fallocate(t testing.TB, p string, off, length int64, keepSize bool) {
	t.Helper()
	fallocateMode(t, p, off, length, map[bool]uint32{true: unix.FALLOC_FL_KEEP_SIZE}[keepSize])
}

// punchHole deallocates [off, off+length) of p, keeping its size.
func punchHole(t testing.TB, p string, off, length int64) {
	t.Helper()
	fallocateMode(t, p, off, length, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE)
}

func fallocateMode(t testing.TB, p string, off, length int64, mode uint32) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	must(t, err)
	defer f.Close()
	must(t, unix.Fallocate(int(f.Fd()), mode, off, length))
}

// reflink clones [srcOff, srcOff+length) of src to dst at dstOff (creating
// dst); length 0 clones the whole file (then offsets must be 0).
func reflink(t testing.TB, src, dst string, srcOff, length, dstOff int64) {
	t.Helper()
	s, err := os.Open(src)
	must(t, err)
	defer s.Close()
	d, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE, 0o644)
	must(t, err)
	defer d.Close()
	if length == 0 {
		must(t, unix.IoctlFileClone(int(d.Fd()), int(s.Fd())))
		return
	}
	must(t, unix.IoctlFileCloneRange(int(d.Fd()), &unix.FileCloneRange{
		Src_fd: int64(s.Fd()), Src_offset: uint64(srcOff), Src_length: uint64(length), Dest_offset: uint64(dstOff),
	}))
}

// setCompression sets the btrfs compression property of an empty file or a
// directory, so that one filesystem can hold extents of every algorithm.
func setCompression(t testing.TB, p, algo string) {
	t.Helper()
	run(t, "btrfs", "property", "set", p, "compression", algo)
}

// patterned returns n bytes that compress well but differ per seed and
// offset (so reflinks and writes are visible in content comparisons).
func patterned(n int, seed uint64) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(uint64(i/61)*7 + seed*13 + uint64(i%61))
	}
	return b
}

// textLines returns n bytes of numbered text lines: data that compress=zstd
// compresses (its heuristic skips data with evenly spread bytes, such as
// patterned's).
func textLines(n int, seed uint64) []byte {
	var b []byte
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, "%d line %08d of some text that compresses well\n", seed, i)
	}
	return b[:n]
}

// random returns n bytes of incompressible data from seed.
func random(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eedf5))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// nfiles makes n empty files named prefix0..prefix(n-1) in dir.
func nfiles(t testing.TB, dir, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s%d", prefix, i)))
		must(t, err)
		must(t, f.Close())
	}
}

// ts builds a time with nanoseconds for setTimes.
func ts(sec, nsec int64) time.Time { return time.Unix(sec, nsec) }
