package btrfsread

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	iofs "io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Helpers for the high-level tests: fill a mounted filesystem with every
// kind of file, record what the kernel shows, and read the same facts back
// through btrfsread after unmounting.

// fileFacts is what both sides must agree on for one path.
type fileFacts struct {
	Ino, Size                  uint64
	Mode, UID, GID, Nlink      uint32
	RdevMajor, RdevMinor       uint32
	Atime, Mtime, Ctime, Btime [2]int64 // seconds, nanoseconds
	Xattrs, Link, Sum, Nested  string
}

// treeFacts maps a path inside one subvolume ("" for its root) to its
// facts; nested subvolumes are listed by name only (Nested set).
type treeFacts map[string]fileFacts

// highRand is a deterministic source so that failures reproduce.
func highRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func textBytes(n int, seed int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d of file %d: the quick brown fox jumps over the lazy dog\n", i, seed)
	}
	return b.Bytes()[:n]
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	noErr(t, os.WriteFile(path, data, 0o644))
}

// pwrite writes data at off into an existing file.
func pwrite(t testing.TB, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	noErr(t, err)
	defer f.Close()
	_, err = f.WriteAt(data, off)
	noErr(t, err)
	noErr(t, f.Sync())
}

// populateFiles fills dir with the file kinds the reader must handle.
func populateFiles(t testing.TB, dir string, bigDir bool) {
	t.Helper()
	r := highRand()
	p := func(name string) string { return filepath.Join(dir, name) }
	writeFile(t, p("empty"), nil)
	writeFile(t, p("inline-small"), []byte("hello, inline world\n"))
	writeFile(t, p("inline-3000"), textBytes(3000, 1))
	writeFile(t, p("text-1m"), textBytes(1<<20, 2))
	writeFile(t, p("random-3m"), randomBytes(r, 3<<20))
	writeFile(t, p("mixed"), append(append(textBytes(300000, 3), randomBytes(r, 400000)...), textBytes(348699, 4)...))

	// Overwrites in the middle leave extents that start inside others.
	writeFile(t, p("overwritten"), textBytes(1<<20, 5))
	pwrite(t, p("overwritten"), 300<<10, randomBytes(r, 4096))
	pwrite(t, p("overwritten"), 700<<10+123, textBytes(9000, 6))

	// Sparse: data islands in holes, ending in a hole.
	noErr(t, os.WriteFile(p("sparse"), nil, 0o644))
	pwrite(t, p("sparse"), 3<<20+17, textBytes(5000, 7))
	pwrite(t, p("sparse"), 7<<20, randomBytes(r, 8192))
	noErr(t, os.Truncate(p("sparse"), 10<<20))

	// Prealloc: a written block inside a fallocated range, and space
	// allocated beyond i_size.
	f, err := os.Create(p("fallocated"))
	noErr(t, err)
	noErr(t, unix.Fallocate(int(f.Fd()), 0, 0, 1<<20))
	_, err = f.WriteAt(randomBytes(r, 4096), 256<<10)
	noErr(t, err)
	noErr(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 1<<20, 1<<20))
	noErr(t, f.Close())

	// Reflinks: a whole-file copy and a range cloned into another file.
	run(t, "cp", "--reflink=always", p("text-1m"), p("reflink-copy"))
	writeFile(t, p("partial-clone"), textBytes(512<<10, 8))
	cloneRange(t, p("text-1m"), 192<<10, p("partial-clone"), 64<<10, 64<<10)

	// NODATACOW (hence NODATASUM): data without checksums.
	writeFile(t, p("nodatasum"), nil)
	run(t, "chattr", "+C", p("nodatasum"))
	writeFile(t, p("nodatasum"), randomBytes(r, 100000))

	// Names.
	writeFile(t, p(strings.Repeat("n", 252)+"日"), []byte("255 bytes of name"))
	writeFile(t, p("héllo wörld ✓"), []byte("non-ascii"))
	writeFile(t, p("line\nbreak"), []byte("newline in name"))

	// Special files, owners, modes.
	noErr(t, os.Symlink("text-1m", p("link-short")))
	noErr(t, os.Symlink(strings.Repeat("long/target/", 80), p("link-long")))
	noErr(t, unix.Mkfifo(p("fifo"), 0o640))
	sock, err := net.ListenUnix("unix", &net.UnixAddr{Name: p("socket"), Net: "unix"})
	noErr(t, err)
	sock.SetUnlinkOnClose(false)
	noErr(t, sock.Close())
	noErr(t, unix.Mknod(p("chardev"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
	noErr(t, unix.Mknod(p("blockdev"), unix.S_IFBLK|0o660, int(unix.Mkdev(259, 70000))))
	noErr(t, os.Lchown(p("random-3m"), 1234, 5678))
	noErr(t, os.Lchown(p("link-short"), 42, 43))
	noErr(t, os.Chmod(p("inline-small"), 0o4755))
	noErr(t, os.Mkdir(p("sticky"), 0o1777))

	// Xattrs: several, a large value, on a directory and a symlink.
	noErr(t, unix.Lsetxattr(p("text-1m"), "user.one", []byte("1"), 0))
	noErr(t, unix.Lsetxattr(p("text-1m"), "user.two", textBytes(3000, 9), 0))
	noErr(t, unix.Lsetxattr(p("text-1m"), "user.empty", nil, 0))
	noErr(t, unix.Lsetxattr(p("sticky"), "user.dir", []byte("on a dir"), 0))
	noErr(t, unix.Lsetxattr(p("link-short"), "trusted.sym", []byte("on a link"), 0))

	// 520 hard links with long names overflow one INODE_REF: extrefs.
	noErr(t, os.Mkdir(p("links"), 0o755))
	writeFile(t, p("links/target"), []byte("many names"))
	for i := range 520 {
		noErr(t, os.Link(p("links/target"), p(fmt.Sprintf("links/hardlink-%04d-%s", i, strings.Repeat("y", 40)))))
	}
	if bigDir {
		noErr(t, os.Mkdir(p("bigdir"), 0o755))
		for i := range 10000 {
			writeFile(t, p(fmt.Sprintf("bigdir/entry-%05d", i)), nil)
		}
	}

	// Times with nanoseconds (after all writes).
	ts := []unix.Timespec{{Sec: 1500000000, Nsec: 123456789}, {Sec: 1600000000, Nsec: 987654321}}
	noErr(t, unix.UtimesNanoAt(unix.AT_FDCWD, p("text-1m"), ts, 0))
	noErr(t, unix.UtimesNanoAt(unix.AT_FDCWD, p("link-short"), ts, unix.AT_SYMLINK_NOFOLLOW))
}

// cloneRange clones n bytes of src at srcOff into dst at dstOff.
func cloneRange(t testing.TB, src string, srcOff int64, dst string, dstOff, n int64) {
	t.Helper()
	s, err := os.Open(src)
	noErr(t, err)
	defer s.Close()
	d, err := os.OpenFile(dst, os.O_WRONLY, 0)
	noErr(t, err)
	defer d.Close()
	noErr(t, unix.IoctlFileCloneRange(int(d.Fd()), &unix.FileCloneRange{
		Src_fd: int64(s.Fd()), Src_offset: uint64(srcOff), Src_length: uint64(n), Dest_offset: uint64(dstOff)}))
}

// statxFacts fills the metadata facts of path from the kernel.
func statxFacts(t testing.TB, path string) fileFacts {
	t.Helper()
	var st unix.Statx_t
	noErr(t, unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_ALL|unix.STATX_BTIME, &st))
	ff := fileFacts{
		Ino: st.Ino, Size: st.Size, Mode: uint32(st.Mode), UID: st.Uid, GID: st.Gid, Nlink: st.Nlink,
		RdevMajor: st.Rdev_major, RdevMinor: st.Rdev_minor,
		Atime: [2]int64{st.Atime.Sec, int64(st.Atime.Nsec)}, Mtime: [2]int64{st.Mtime.Sec, int64(st.Mtime.Nsec)},
		Ctime: [2]int64{st.Ctime.Sec, int64(st.Ctime.Nsec)}, Btime: [2]int64{st.Btime.Sec, int64(st.Btime.Nsec)},
	}
	var xs []xattrPair
	size, err := unix.Llistxattr(path, nil)
	noErr(t, err)
	names := make([]byte, size)
	size, err = unix.Llistxattr(path, names)
	noErr(t, err)
	for _, name := range strings.Split(string(names[:size]), "\x00") {
		if name == "" {
			continue
		}
		n, err := unix.Lgetxattr(path, name, nil)
		noErr(t, err)
		v := make([]byte, n)
		n, err = unix.Lgetxattr(path, name, v)
		noErr(t, err)
		xs = append(xs, xattrPair{name, v[:n]})
	}
	ff.Xattrs = formatXattrs(xs)
	return ff
}

type xattrPair struct {
	name  string
	value []byte
}

func formatXattrs(xs []xattrPair) string {
	sort.Slice(xs, func(i, j int) bool { return xs[i].name < xs[j].name })
	var b strings.Builder
	for _, x := range xs {
		fmt.Fprintf(&b, "%s=%s;", x.name, hex.EncodeToString(x.value))
	}
	return b.String()
}

// mountedFacts records the facts of every path of the subvolume mounted at
// root, without entering nested subvolumes.
func mountedFacts(t testing.TB, root string) treeFacts {
	t.Helper()
	facts := treeFacts{}
	rootIno := statxFacts(t, root).Ino
	err := filepath.WalkDir(root, func(path string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			rel = ""
		}
		ff := statxFacts(t, path)
		// A nested subvolume shows as its root (inode 256) or, inside a
		// snapshot, as an empty placeholder directory (inode 2).
		if rel != "" && d.IsDir() && (ff.Ino == rootIno || ff.Ino == 2) {
			facts[rel] = fileFacts{Nested: "yes"}
			return filepath.SkipDir
		}
		switch ff.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(path)
			noErr(t, err)
			ff.Sum = sumHex(data)
		case unix.S_IFLNK:
			ff.Link, err = os.Readlink(path)
			noErr(t, err)
		}
		facts[rel] = ff
		return nil
	})
	noErr(t, err)
	return facts
}

func sumHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// readerFacts reads the same facts through btrfsread, checking on the way
// that every name resolves by hash and appears among its inode's refs.
func readerFacts(t testing.TB, sv *Subvolume) treeFacts {
	t.Helper()
	facts := treeFacts{}
	refCounts := map[uint64]int{}
	var walk func(dir uint64, rel string)
	walk = func(dir uint64, rel string) {
		facts[rel] = inodeFacts(t, sv, dir)
		ents, err := sv.ReadDir(dir)
		noErr(t, err)
		for _, d := range ents {
			path := joinPath(rel, string(d.Name))
			byName, err := sv.LookupName(dir, d.Name)
			if err != nil || byName.Location != d.Location {
				t.Fatalf("LookupName(%d, %q) = %v, %v; dir index says %v", dir, d.Name, byName.Location, err, d.Location)
			}
			if d.Location.Type == RootItemKey {
				facts[path] = fileFacts{Nested: "yes"}
				continue
			}
			ino := d.Location.ObjectID
			if d.Type == FtDir {
				walk(ino, path)
				continue
			}
			if _, seen := refCounts[ino]; !seen {
				refs, err := sv.Refs(ino)
				noErr(t, err)
				refCounts[ino] = len(refs)
			}
			ff := inodeFacts(t, sv, ino)
			if uint32(refCounts[ino]) != ff.Nlink {
				t.Errorf("%s: %d refs, nlink %d", path, refCounts[ino], ff.Nlink)
			}
			facts[path] = ff
		}
	}
	walk(FirstFreeObjectID, "")
	return facts
}

func tsPair(ts Timespec) [2]int64 { return [2]int64{int64(ts.Sec), int64(ts.Nsec)} }

// inodeFacts reads one inode's facts, its content through ReadAt in
// unaligned pieces.
func inodeFacts(t testing.TB, sv *Subvolume, ino uint64) fileFacts {
	t.Helper()
	it, err := sv.Inode(ino)
	noErr(t, err)
	ff := fileFacts{Ino: ino, Size: it.Size, Mode: it.Mode, UID: it.UID, GID: it.GID, Nlink: it.Nlink,
		RdevMajor: uint32(it.Rdev >> 20), RdevMinor: uint32(it.Rdev & 0xfffff),
		Atime: tsPair(it.Atime), Mtime: tsPair(it.Mtime), Ctime: tsPair(it.Ctime), Btime: tsPair(it.Otime)}
	xs, err := sv.Xattrs(ino)
	noErr(t, err)
	var pairs []xattrPair
	for _, x := range xs {
		pairs = append(pairs, xattrPair{string(x.Name), x.Value})
	}
	ff.Xattrs = formatXattrs(pairs)
	switch it.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		ff.Sum = sumHex(readAllAt(t, sv, ino, it.Size))
	case unix.S_IFLNK:
		target, err := sv.Readlink(ino)
		noErr(t, err)
		ff.Link = string(target)
	}
	return ff
}

// readAllAt reads a whole file through ReadAt in odd-sized pieces, checking
// the io.EOF contract at the end.
func readAllAt(t testing.TB, sv *Subvolume, ino, size uint64) []byte {
	t.Helper()
	out := make([]byte, 0, size)
	buf := make([]byte, min(777777, size+1))
	for {
		n, err := sv.ReadAt(ino, buf, int64(len(out)))
		out = append(out, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("ReadAt(ino %d, off %d): %v", ino, len(out)-n, err)
		}
	}
	if uint64(len(out)) != size {
		t.Fatalf("ino %d: read %d bytes, size %d", ino, len(out), size)
	}
	return out
}

// compareFacts reports every path whose facts differ.
func compareFacts(t testing.TB, what string, want, got treeFacts) {
	t.Helper()
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	bad := 0
	for _, p := range paths {
		w, inW := want[p]
		g, inG := got[p]
		switch {
		case !inW:
			t.Errorf("%s: %q only in btrfsread", what, p)
		case !inG:
			t.Errorf("%s: %q missing from btrfsread", what, p)
		case w != g:
			t.Errorf("%s: %q differs:\n kernel    %+v\n btrfsread %+v", what, p, w, g)
		default:
			continue
		}
		if bad++; bad >= 10 {
			t.Fatalf("%s: too many differences", what)
		}
	}
}

// itemKinds counts what the reader met in a whole fs tree, so that a test
// can require that its images really hold what it means to check.
type itemKinds struct {
	Inline, InlineCompressed, Reg, RegCompressed, Prealloc, Hole, Extrefs int
}

func countItemKinds(t testing.TB, sv *Subvolume) itemKinds {
	t.Helper()
	var k itemKinds
	noErr(t, sv.Tree().Walk(Key{}, MaxKey, func(it Item) error {
		switch it.Key.Type {
		case InodeExtrefKey:
			k.Extrefs++
		case ExtentDataKey:
			e, err := ParseFileExtent(it.Data)
			if err != nil {
				return err
			}
			compressed := e.Compression != CompressNone
			switch {
			case e.Type == ExtentInline && compressed:
				k.InlineCompressed++
			case e.Type == ExtentInline:
				k.Inline++
			case e.Type == ExtentPrealloc:
				k.Prealloc++
			case e.IsHole():
				k.Hole++
			case compressed:
				k.RegCompressed++
			default:
				k.Reg++
			}
		}
		return nil
	}))
	return k
}
