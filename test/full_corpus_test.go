package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFullSend builds the full-send corpus in one filesystem and checks, per
// scenario, the kernel's stream (validating the scenario) and ours: receive
// gives a tree equal to the snapshot, the dump matches the kernel's.
func TestFullSend(t *testing.T) {
	requireRoot(t)
	scenarios := fullCorpus()
	scenarios = selectScenarios(t, scenarios)
	c := buildCorpus(t, fsOpts{}, scenarios)
	checkCorpus(t, c, scenarios)
	checkVariants(t, c, scenarios, protocolVariants, false)
}

func j(parts ...string) string { return filepath.Join(parts...) }

func fullCorpus() []scenario {
	return []scenario{
		full("empty-subvol", func(t testing.TB, d string) {}),
		full("file-types", func(t testing.TB, d string) {
			writeFile(t, j(d, "file"), []byte("data\n"))
			mustMkdir(t, j(d, "dir"))
			mustSymlink(t, "file", j(d, "symlink"))
			mknod(t, j(d, "fifo"), syscall.S_IFIFO|0o644, 0, 0)
			mknod(t, j(d, "socket"), syscall.S_IFSOCK|0o755, 0, 0)
			mknod(t, j(d, "null"), syscall.S_IFCHR|0o666, 1, 3)
			mknod(t, j(d, "blk"), syscall.S_IFBLK|0o660, 7, 200)
			mknod(t, j(d, "bigdev"), syscall.S_IFCHR|0o600, 4000, 1<<19) // needs the new_encode_dev form
			mknod(t, j(d, "dir", "fifo2"), syscall.S_IFIFO|0o600, 0, 0)
		}),
		full("modes", func(t testing.TB, d string) {
			for _, m := range []uint32{0, 0o400, 0o644, 0o777, 0o4755, 0o2755, 0o6711, 0o1777, 0o7777} {
				p := j(d, fmt.Sprintf("f%04o", m))
				writeFile(t, p, []byte("x"))
				mustChmod(t, p, os.FileMode(m))
			}
			mustMkdir(t, j(d, "sticky"))
			mustChmod(t, j(d, "sticky"), 0o1777)
			mustMkdir(t, j(d, "setgid"))
			mustChmod(t, j(d, "setgid"), 0o2775)
			mustMkdir(t, j(d, "locked"))
			writeFile(t, j(d, "locked", "inside"), []byte("y"))
			mustChmod(t, j(d, "locked"), 0o500)
			mknod(t, j(d, "fifo"), syscall.S_IFIFO|0o4610, 0, 0)
			mustChmod(t, d, 0o700) // the subvolume root too
		}),
		full("owners", func(t testing.TB, d string) {
			for i, id := range [][2]int{{0, 0}, {1000, 1000}, {1, 65534}, {65534, 1}, {123456, 7654321}, {-2 & 0xffffffff, 4294967294}} {
				p := j(d, fmt.Sprintf("f%d", i))
				writeFile(t, p, []byte("x"))
				mustLchown(t, p, id[0], id[1])
			}
			mustSymlink(t, "f1", j(d, "link"))
			mustLchown(t, j(d, "link"), 42, 43)
			mustMkdir(t, j(d, "dir"))
			mustLchown(t, j(d, "dir"), 1000, 100)
			mknod(t, j(d, "fifo"), syscall.S_IFIFO|0o644, 0, 0)
			mustLchown(t, j(d, "fifo"), 5, 6)
			// chown clears setuid: the stream must chown before chmod.
			writeFile(t, j(d, "suid"), []byte("x"))
			mustLchown(t, j(d, "suid"), 1000, 1000)
			mustChmod(t, j(d, "suid"), 0o6755)
			mustLchown(t, d, 3000, 3001)
		}),
		full("times", func(t testing.TB, d string) {
			writeFile(t, j(d, "ns"), []byte("x"))
			setTimes(t, j(d, "ns"), ts(1600000000, 123456789), ts(1500000000, 987654321))
			writeFile(t, j(d, "epoch"), nil)
			setTimes(t, j(d, "epoch"), ts(0, 0), ts(0, 0))
			writeFile(t, j(d, "old"), nil)
			setTimes(t, j(d, "old"), ts(-1000000000, 5), ts(-86400*365*10, 999999999))
			writeFile(t, j(d, "future"), nil)
			setTimes(t, j(d, "future"), ts(4102444800, 1), ts(32503680000, 2))
			mustSymlink(t, "ns", j(d, "link"))
			setTimes(t, j(d, "link"), ts(1234567890, 111), ts(1234567890, 222))
			mustMkdir(t, j(d, "dir"))
			writeFile(t, j(d, "dir", "inside"), nil)
			setTimes(t, j(d, "dir", "inside"), ts(1, 1), ts(2, 2))
			setTimes(t, j(d, "dir"), ts(1111111111, 1), ts(1222222222, 3)) // after its content
			setTimes(t, d, ts(1333333333, 4), ts(1444444444, 5))
		}),
		full("xattrs-user", func(t testing.TB, d string) {
			writeFile(t, j(d, "f"), []byte("x"))
			setXattr(t, j(d, "f"), "user.a", []byte("1"))
			setXattr(t, j(d, "f"), "user.empty", nil)
			setXattr(t, j(d, "f"), "user.binary", []byte{0, 1, 2, 255, 0})
			setXattr(t, j(d, "f"), "user.big", random(3900, 1))
			setXattr(t, j(d, "f"), "user."+strings.Repeat("n", 200), []byte("long name"))
			mustMkdir(t, j(d, "dir"))
			setXattr(t, j(d, "dir"), "user.dir", []byte("on a dir"))
			writeFile(t, j(d, "many"), nil)
			for i := 0; i < 100; i++ {
				setXattr(t, j(d, "many"), fmt.Sprintf("user.x%03d", i), []byte(fmt.Sprint(i)))
			}
			setXattr(t, d, "user.root", []byte("on the subvolume root"))
		}),
		full("xattr-near-max", func(t testing.TB, d string) {
			writeFile(t, j(d, "f"), nil)
			setXattr(t, j(d, "f"), "user.near-max", random(16000, 2)) // close to what a 16 KiB leaf holds
		}),
		full("xattrs-trusted-security", func(t testing.TB, d string) {
			writeFile(t, j(d, "f"), []byte("x"))
			setXattr(t, j(d, "f"), "trusted.t", []byte("trusted value"))
			setXattr(t, j(d, "f"), "security.s", []byte("security value"))
			writeFile(t, j(d, "cap"), []byte("#!/bin/sh\n"))
			run(t, "setcap", "cap_net_raw,cap_sys_admin+ep", j(d, "cap"))
			mustSymlink(t, "f", j(d, "link"))
			setXattr(t, j(d, "link"), "trusted.onlink", []byte("symlink xattr"))
			mknod(t, j(d, "fifo"), syscall.S_IFIFO|0o644, 0, 0)
			setXattr(t, j(d, "fifo"), "trusted.onfifo", []byte("v"))
		}),
		full("posix-acls", func(t testing.TB, d string) {
			writeFile(t, j(d, "f"), []byte("x"))
			run(t, "setfacl", "-m", "u:1000:rwx,g:100:r,m::rwx", j(d, "f"))
			mustMkdir(t, j(d, "dir"))
			run(t, "setfacl", "-d", "-m", "u:1001:rx,g::r", j(d, "dir"))
			run(t, "setfacl", "-m", "u:1002:rwx", j(d, "dir"))
			writeFile(t, j(d, "dir", "inherits"), []byte("y"))
			mustMkdir(t, j(d, "dir", "subdir-inherits"))
		}),
		full("hardlinks-one-dir", func(t testing.TB, d string) {
			writeFile(t, j(d, "a"), patterned(5000, 1))
			for i := 0; i < 5; i++ {
				mustLink(t, j(d, "a"), j(d, fmt.Sprintf("link%d", i)))
			}
			mknod(t, j(d, "fifo"), syscall.S_IFIFO|0o644, 0, 0)
			mustLink(t, j(d, "fifo"), j(d, "fifo-link"))
			mustSymlink(t, "a", j(d, "sl"))
			mustLink(t, j(d, "sl"), j(d, "sl-link"))
		}),
		full("hardlinks-across-dirs", func(t testing.TB, d string) {
			mustMkdirAll(t, j(d, "x", "y", "z"))
			mustMkdir(t, j(d, "w"))
			writeFile(t, j(d, "x", "y", "z", "deep"), patterned(100, 2))
			mustLink(t, j(d, "x", "y", "z", "deep"), j(d, "top"))
			mustLink(t, j(d, "x", "y", "z", "deep"), j(d, "x", "mid"))
			mustLink(t, j(d, "x", "y", "z", "deep"), j(d, "w", "other"))
			writeFile(t, j(d, "w", "first"), nil) // links made before their target's dir
			mustLink(t, j(d, "w", "first"), j(d, "x", "y", "second"))
		}),
		full("hardlinks-600-extrefs", func(t testing.TB, d string) {
			writeFile(t, j(d, "target"), []byte("many links"))
			for i := 0; i < 600; i++ {
				mustLink(t, j(d, "target"), j(d, fmt.Sprintf("link-with-a-rather-long-name-to-fill-the-ref-item-%04d", i)))
			}
		}),
		full("symlinks", func(t testing.TB, d string) {
			mustSymlink(t, "short", j(d, "dangling"))
			mustSymlink(t, "/absolute/path/somewhere", j(d, "absolute"))
			mustSymlink(t, strings.Repeat("long/", 210), j(d, "long-1050"))
			mustSymlink(t, strings.Repeat("x", 4000), j(d, "long-4000"))
			mustMkdir(t, j(d, "dir"))
			mustSymlink(t, "dir", j(d, "to-dir"))
			mustSymlink(t, "../dir", j(d, "dir", "up"))
			mustSymlink(t, "sp ace\nnewline", j(d, "odd-target"))
		}),
		full("empty-files", func(t testing.TB, d string) {
			nfiles(t, d, "empty", 20)
			mustMkdir(t, j(d, "emptydir"))
		}),
		full("inline-files", func(t testing.TB, d string) {
			writeFile(t, j(d, "100"), random(100, 3))
			writeFile(t, j(d, "2000"), random(2000, 4))
			writeFile(t, j(d, "1"), []byte("1"))
			writeFile(t, j(d, "compressible-3000"), patterned(3000, 5))
		}),
		full("inline-then-extents", func(t testing.TB, d string) {
			// A clone beyond EOF keeps the inline extent at offset 0 and puts
			// regular extents after it: a layout writes never make.
			writeFile(t, j(d, "src"), random(256<<10, 26))
			writeFile(t, j(d, "f"), random(100, 27))
			reflink(t, j(d, "src"), j(d, "f"), 4096, 65536, 143360)
		}),
		full("inline-limit", func(t testing.TB, d string) {
			for _, n := range []int{2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 8193} {
				writeFile(t, j(d, fmt.Sprint(n)), random(n, uint64(n)))
			}
		}),
		full("sparse-big", func(t testing.TB, d string) {
			p := j(d, "1g")
			writeAt(t, p, 0, random(4096, 6))
			writeAt(t, p, 300<<20, random(70000, 7))
			writeAt(t, p, 1<<30-1, []byte{1})
			writeAt(t, j(d, "hole-at-start"), 10<<20, random(5000, 8))
		}),
		full("sparse-tail", func(t testing.TB, d string) {
			writeFile(t, j(d, "tail"), random(4096, 9))
			mustTruncate(t, j(d, "tail"), 10<<20)
			writeFile(t, j(d, "only-size"), nil)
			mustTruncate(t, j(d, "only-size"), 123456789)
			writeFile(t, j(d, "inline-then-tail"), []byte("tiny"))
			mustTruncate(t, j(d, "inline-then-tail"), 100000)
		}),
		full("fallocate", func(t testing.TB, d string) {
			fallocate(t, j(d, "prealloc-1m"), 0, 1<<20, false)
			writeFile(t, j(d, "beyond-eof"), random(10000, 10))
			fallocate(t, j(d, "beyond-eof"), 8192, 1<<20, true)
			writeFile(t, j(d, "middle"), nil)
			writeAt(t, j(d, "middle"), 0, random(8192, 11))
			fallocate(t, j(d, "middle"), 8192, 65536, false)
			writeAt(t, j(d, "middle"), 8192+65536, random(8192, 12))
			fallocate(t, j(d, "keep-size-only"), 0, 65536, true)
			fallocate(t, j(d, "partly-written"), 0, 1<<20, false)
			writeAt(t, j(d, "partly-written"), 200000, random(5000, 13))
		}),
		full("compressed", func(t testing.TB, d string) {
			for _, algo := range []string{"zlib", "lzo", "zstd"} {
				dir := j(d, algo)
				mustMkdir(t, dir)
				setCompression(t, dir, algo) // inherited by new files
				writeFile(t, j(dir, "big"), patterned(3<<20, 14))
				writeFile(t, j(dir, "mixed"), append(patterned(200000, 15), random(200000, 16)...))
				writeFile(t, j(dir, "inline"), patterned(3000, 17))
				writeFile(t, j(dir, "random"), random(100000, 18))
				writeAt(t, j(dir, "sparse"), 1<<20, patterned(300000, 19))
			}
		}),
		full("compressed-text", func(t testing.TB, d string) {
			// Text passes compress=/property's heuristic, so these extents
			// are compressed (patterned data mostly is not): the material
			// of --compressed-data.
			for _, algo := range []string{"zlib", "lzo", "zstd"} {
				dir := j(d, algo)
				mustMkdir(t, dir)
				setCompression(t, dir, algo)
				writeFile(t, j(dir, "big"), textLines(1<<20+5000, 1))
				writeFile(t, j(dir, "inline"), textLines(3000, 2))
				writeFile(t, j(dir, "overwritten"), textLines(512<<10, 3))
				run(t, "sync", j(dir, "overwritten"))
				writeAt(t, j(dir, "overwritten"), 100000, textLines(20000, 4)) // extents partly referenced
				writeAt(t, j(dir, "sparse"), 1<<20, textLines(300000, 5))
				reflink(t, j(dir, "big"), j(dir, "clone"), 0, 0, 0)
			}
		}),
		full("reflinks", func(t testing.TB, d string) {
			writeFile(t, j(d, "src"), random(1<<20, 20))
			reflink(t, j(d, "src"), j(d, "clone"), 0, 0, 0)
			writeFile(t, j(d, "partial"), random(512<<10, 21))
			reflink(t, j(d, "src"), j(d, "partial"), 128<<10, 256<<10, 64<<10)
			reflink(t, j(d, "src"), j(d, "self"), 0, 0, 0)
			reflink(t, j(d, "self"), j(d, "self"), 0, 64<<10, 512<<10) // within one file
			mustMkdir(t, j(d, "z"))
			setCompression(t, j(d, "z"), "zstd")
			writeFile(t, j(d, "z", "csrc"), patterned(1<<20, 22))
			reflink(t, j(d, "z", "csrc"), j(d, "cclone"), 0, 0, 0)
			writeFile(t, j(d, "a-tail"), random(10000, 23)) // unaligned tail: cloned by clone of whole file
			reflink(t, j(d, "a-tail"), j(d, "b-tail"), 0, 0, 0)
		}),
		full("deep-tree", func(t testing.TB, d string) {
			// The kernel's stream does not keep the root's mtime (kernelQuirk).
			p := d
			for i := 0; i < 100; i++ {
				p = j(p, fmt.Sprintf("d%d", i))
				mustMkdir(t, p)
				writeFile(t, j(p, "f"), []byte(fmt.Sprint(i)))
			}
		}),
		full("big-dir-10000", func(t testing.TB, d string) {
			nfiles(t, d, "entry-", 10000)
		}),
		full("long-names", func(t testing.TB, d string) {
			n255 := strings.Repeat("n", 255)
			writeFile(t, j(d, n255), []byte("x"))
			mustMkdir(t, j(d, strings.Repeat("d", 255)))
			writeFile(t, j(d, strings.Repeat("d", 255), n255), []byte("y"))
			mustSymlink(t, n255, j(d, strings.Repeat("s", 255)))
			mustLink(t, j(d, n255), j(d, strings.Repeat("l", 255)))
			u := strings.Repeat("é", 127) // 254 bytes of UTF-8
			writeFile(t, j(d, u), nil)
		}),
		full("odd-names", func(t testing.TB, d string) {
			for _, n := range []string{
				"日本語のファイル", "emoji-😀", "with space", " leading space", "trailing space ",
				"new\nline", "tab\there", `back\slash`, `"quotes'`, "-dash", "--", "...", ".hidden",
				"\xff\xfe invalid utf8", "\x01\x7f ctrl", "o257-7-0", "o9999-1-0", "%25%2F", "*?[", "#",
			} {
				writeFile(t, j(d, n), []byte(n))
			}
			mustMkdir(t, j(d, "dir with\nnewline"))
			writeFile(t, j(d, "dir with\nnewline", "ü"), nil)
		}),
		full("nested-subvolume", func(t testing.TB, d string) {
			writeFile(t, j(d, "before"), []byte("x"))
			mustMkdir(t, j(d, "dir"))
			run(t, "btrfs", "subvolume", "create", j(d, "dir", "inner"))
			writeFile(t, j(d, "dir", "inner", "not-sent"), []byte("skipped by send"))
			writeFile(t, j(d, "dir", "after"), []byte("y"))
			run(t, "btrfs", "subvolume", "create", j(d, "top-inner"))
		}),
		full("many-extents", func(t testing.TB, d string) {
			f, err := os.OpenFile(j(d, "frag"), os.O_WRONLY|os.O_CREATE|os.O_SYNC, 0o644)
			must(t, err)
			defer f.Close()
			for i := int64(0); i < 1000; i++ {
				_, err := f.WriteAt(random(4096, uint64(i)), i*8192) // every other block: one extent each
				must(t, err)
			}
			for i := int64(0); i < 200; i++ { // and some adjacent ones, written apart
				_, err := f.WriteAt(random(4096, uint64(5000+i)), (1000+i)*4096*2+4096)
				must(t, err)
			}
		}),
		full("big-file", func(t testing.TB, d string) {
			writeFile(t, j(d, "32m"), random(32<<20, 24))
			writeFile(t, j(d, "unaligned"), random(5<<20+123, 25))
		}),
		full("child-older-than-parent", func(t testing.TB, d string) {
			// Inodes created before the directories they end up in: the
			// stream must create the child under an orphan name first.
			writeFile(t, j(d, "old-file"), []byte("x"))
			mustMkdir(t, j(d, "old-dir"))
			writeFile(t, j(d, "old-dir", "g"), []byte("g"))
			mustMkdirAll(t, j(d, "new", "newer"))
			mustRename(t, j(d, "old-file"), j(d, "new", "newer", "old-file"))
			mustRename(t, j(d, "old-dir"), j(d, "new", "newer", "old-dir"))
			mustMkdir(t, j(d, "late"))
			mustRename(t, j(d, "new"), j(d, "late", "new"))
		}),
		full("names-sorted-against-inodes", func(t testing.TB, d string) {
			for i := 20; i > 0; i-- {
				writeFile(t, j(d, fmt.Sprintf("z%02d", i)), []byte(fmt.Sprint(i)))
			}
			mustMkdir(t, j(d, "b"))
			mustMkdir(t, j(d, "a"))
			mustRename(t, j(d, "b"), j(d, "a", "b"))
		}),
		full("mixed-tree", func(t testing.TB, d string) {
			for i := 0; i < 30; i++ {
				dir := j(d, fmt.Sprintf("dir%d", i%7), fmt.Sprintf("sub%d", i%3))
				mustMkdirAll(t, dir)
				p := j(dir, fmt.Sprintf("file%d", i))
				writeFile(t, p, random(i*997, uint64(i)))
				mustChmod(t, p, os.FileMode(0o600+i))
				setXattr(t, p, "user.i", []byte(fmt.Sprint(i)))
				setTimes(t, p, ts(int64(1e9+i), int64(i)), ts(int64(1e9+2*i), int64(3*i)))
			}
		}),
	}
}
