package test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// entry is everything a received tree must reproduce about one path.
// Not compared: atime and ctime (receive cannot set ctime), inode numbers,
// directory sizes (they follow from the names, which are compared), inode
// flags (protocol 1 does not carry them).
type entry struct {
	Type   string
	Mode   uint32 // permission bits with setuid, setgid, sticky
	UID    uint32
	GID    uint32
	Size   int64 // not for directories
	Mtime  string
	Rdev   uint64
	Nlink  uint64
	Target string   // symlink target
	Xattrs []string // name=hex(value), sorted
	Digest string   // content of a regular file, holes read as zeros
	Links  string   // the paths sharing this inode, for non-directories
}

// tree maps a path relative to the root ("." for the root) to its entry.
type tree map[string]*entry

func fileType(m uint32) string {
	switch m & syscall.S_IFMT {
	case syscall.S_IFREG:
		return "file"
	case syscall.S_IFDIR:
		return "dir"
	case syscall.S_IFLNK:
		return "symlink"
	case syscall.S_IFIFO:
		return "fifo"
	case syscall.S_IFSOCK:
		return "socket"
	case syscall.S_IFCHR:
		return "chardev"
	case syscall.S_IFBLK:
		return "blockdev"
	}
	return fmt.Sprintf("type%o", m&syscall.S_IFMT)
}

// captureTree reads everything compareTrees compares under root. Nested
// subvolumes (and the empty directories that stand for them in a snapshot)
// are left out: btrfs send skips them.
func captureTree(root string) (tree, error) {
	var rootSt syscall.Stat_t
	if err := syscall.Lstat(root, &rootSt); err != nil {
		return nil, err
	}
	tr := tree{}
	byIno := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		if rel != "." && st.Mode&syscall.S_IFMT == syscall.S_IFDIR && (st.Dev != rootSt.Dev || st.Ino == 2 || st.Ino == 256) {
			return filepath.SkipDir // a nested subvolume or its stub
		}
		e := &entry{
			Type:  fileType(st.Mode),
			Mode:  st.Mode & 0o7777,
			UID:   st.Uid,
			GID:   st.Gid,
			Size:  st.Size,
			Mtime: fmt.Sprintf("%d.%09d", st.Mtim.Sec, st.Mtim.Nsec),
			Rdev:  st.Rdev,
			Nlink: st.Nlink,
		}
		if e.Type == "dir" {
			e.Size = 0
		} else {
			byIno[st.Ino] = append(byIno[st.Ino], rel)
		}
		if e.Xattrs, err = readXattrs(p); err != nil {
			return err
		}
		switch e.Type {
		case "symlink":
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
		case "file":
			if e.Digest, err = contentDigest(p); err != nil {
				return err
			}
		}
		tr[rel] = e
		return nil
	})
	for _, paths := range byIno {
		sort.Strings(paths)
		links := strings.Join(paths, " | ")
		for _, p := range paths {
			tr[p].Links = links
		}
	}
	return tr, err
}

// readXattrs lists every xattr of p (not following symlinks), all
// namespaces, as sorted name=hex(value).
func readXattrs(p string) ([]string, error) {
	size, err := unix.Llistxattr(p, nil)
	if err != nil || size == 0 {
		return nil, err
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(p, buf); err != nil {
		return nil, err
	}
	var out []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		vsize, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		val := make([]byte, vsize)
		if vsize, err = unix.Lgetxattr(p, name, val); err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		out = append(out, name+"="+hex.EncodeToString(val[:vsize]))
	}
	sort.Strings(out)
	return out, nil
}

// contentDigest hashes a file's content as (offset, block) for every 64 KiB
// block that is not all zeros. Holes are skipped with SEEK_DATA, so a 1 TiB
// sparse file costs nothing, and the digest does not depend on where the
// filesystem keeps holes, prealloc or written zeros.
func contentDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	const block = 64 << 10
	h := sha256.New()
	buf := make([]byte, block)
	zero := make([]byte, block)
	var next int64 // first offset not hashed yet (block aligned)
	for {
		data, err := unix.Seek(int(f.Fd()), next, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after next
		}
		if err != nil {
			return "", err
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return "", err
		}
		for off := data / block * block; off < hole; off += block {
			n, err := f.ReadAt(buf, off)
			if err != nil && err != io.EOF {
				return "", err
			}
			if !bytes.Equal(buf[:n], zero[:n]) {
				fmt.Fprintf(h, "%d:", off)
				h.Write(buf[:n])
			}
			next = off + block
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

const maxReported = 60

// compareTrees reports (as test errors, with paths) every difference between
// the tree at want and the tree at got, up to maxReported lines. It returns
// true when they are equal.
func compareTrees(t testing.TB, want, got string) bool {
	t.Helper()
	diffs, err := treeDiffs(want, got)
	if err != nil {
		t.Errorf("compare %s with %s: %v", want, got, err)
		return false
	}
	if len(diffs) == 0 {
		return true
	}
	t.Errorf("%s differs from %s in %d ways:\n%s", got, want, len(diffs), capLines(diffs))
	return false
}

func capLines(lines []string) string {
	if len(lines) > maxReported {
		lines = append(lines[:maxReported:maxReported], fmt.Sprintf("... and %d more", len(lines)-maxReported))
	}
	return "  " + strings.Join(lines, "\n  ")
}

// treeDiffs lists the differences between two trees, one line each.
func treeDiffs(want, got string) ([]string, error) {
	w, err := captureTree(want)
	if err != nil {
		return nil, err
	}
	g, err := captureTree(got)
	if err != nil {
		return nil, err
	}
	var diffs []string
	for _, p := range unionKeys(w, g) {
		we, ge := w[p], g[p]
		switch {
		case ge == nil:
			diffs = append(diffs, fmt.Sprintf("%q: missing (want %s)", p, we.Type))
		case we == nil:
			diffs = append(diffs, fmt.Sprintf("%q: unexpected %s", p, ge.Type))
		default:
			diffs = append(diffs, entryDiffs(p, we, ge)...)
		}
	}
	return diffs, nil
}

func unionKeys(a, b tree) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if a[k] == nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func entryDiffs(p string, w, g *entry) []string {
	var diffs []string
	field := func(name string, wv, gv any) {
		if fmt.Sprint(wv) != fmt.Sprint(gv) {
			diffs = append(diffs, fmt.Sprintf("%q: %s = %v, want %v", p, name, gv, wv))
		}
	}
	field("type", w.Type, g.Type)
	if w.Type != g.Type {
		return diffs
	}
	field("mode", fmt.Sprintf("%04o", w.Mode), fmt.Sprintf("%04o", g.Mode))
	field("uid", w.UID, g.UID)
	field("gid", w.GID, g.GID)
	field("size", w.Size, g.Size)
	field("mtime", w.Mtime, g.Mtime)
	field("rdev", w.Rdev, g.Rdev)
	field("nlink", w.Nlink, g.Nlink)
	field("target", w.Target, g.Target)
	field("content", w.Digest, g.Digest)
	field("hardlinks", w.Links, g.Links)
	onlyW, onlyG := multisetDiff(w.Xattrs, g.Xattrs)
	for _, x := range onlyW {
		diffs = append(diffs, fmt.Sprintf("%q: xattr %s missing or different", p, shorten(x)))
	}
	for _, x := range onlyG {
		diffs = append(diffs, fmt.Sprintf("%q: unexpected xattr %s", p, shorten(x)))
	}
	return diffs
}

func shorten(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// compareHoles reports regular files under a and b (two received copies of
// one snapshot) whose data/hole maps (SEEK_DATA/SEEK_HOLE) differ. A full
// send does not keep prealloc, so this compares two receives, not a receive
// with the original.
func compareHoles(t testing.TB, a, b string) bool {
	t.Helper()
	diffs, err := holeDiffs(a, b)
	if err != nil {
		t.Errorf("compare holes of %s with %s: %v", a, b, err)
		return false
	}
	if len(diffs) > 0 {
		t.Errorf("holes of %s differ from %s:\n%s", b, a, capLines(diffs))
		return false
	}
	return true
}

func holeDiffs(a, b string) ([]string, error) {
	ta, err := captureTree(a)
	if err != nil {
		return nil, err
	}
	tb, err := captureTree(b)
	if err != nil {
		return nil, err
	}
	var diffs []string
	for _, p := range unionKeys(ta, tb) {
		if ta[p] == nil || tb[p] == nil || ta[p].Type != "file" || tb[p].Type != "file" {
			continue // compareTrees reports these
		}
		ma, err := dataMap(filepath.Join(a, p))
		if err != nil {
			return nil, err
		}
		mb, err := dataMap(filepath.Join(b, p))
		if err != nil {
			return nil, err
		}
		if ma != mb {
			diffs = append(diffs, fmt.Sprintf("%q: data ranges %s, want %s", p, shorten(mb), shorten(ma)))
		}
	}
	return diffs, nil
}

// dataMap lists a file's data ranges as "start-end" from SEEK_DATA/SEEK_HOLE.
func dataMap(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var ranges []string
	var off int64
	for {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return strings.Join(ranges, ","), nil
		}
		if err != nil {
			return "", err
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return "", err
		}
		ranges = append(ranges, fmt.Sprintf("%d-%d", data, hole))
		off = hole
	}
}
