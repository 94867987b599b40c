package btrfsread

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reading a block device that the kernel has mounted: btrfs writes it with
// bios that bypass the device's page cache, so pages that any process read
// before keep their old contents, and a buffered read can return a block as
// it was several commits ago. Two ways out were measured (README, "Live
// filesystems"; BenchmarkLiveDevice): reading with O_DIRECT, through 1 MiB
// windows of the reader's own for small reads, ran at 0.8 to 1.0 s per GiB
// of file data here, while buffered reads of the same device, its cache
// dropped first, took about 0.5 s (the kernel's read-ahead keeps requests
// large and in flight) and a warm cache costs what an image file costs. So
// a block device is read through the page cache, and stale pages are
// dropped instead:
//   - a tree block or data sector that fails validation makes the reader
//     drop the device's cached pages and read again (FS.dropCaches) before
//     it counts as bad: a stale page fails its checksum, or the bytenr or
//     generation its pointer promised, and one that passes is the same
//     block;
//   - data without a checksum has its pages dropped before it is read
//     (FS.dropCachedRange), and the superblock is read with O_DIRECT:
//     nothing could tell that they are stale.
// Image files need none of this: the kernel writes them through the page
// cache (the loop driver), so buffered reads of them are coherent.

// directAlign is the alignment of O_DIRECT offsets, lengths and buffers
// (the logical block size of any device is at most 4 KiB).
const directAlign = 4096

// blockDevice reads a block device through f (buffered), or past the page
// cache through direct. Close closes direct only (f is Open's).
type blockDevice struct {
	f      *os.File
	direct *os.File
}

// coherentReader returns how to read f: f itself for a regular file, a
// *blockDevice for a block device.
func coherentReader(f *os.File) (io.ReaderAt, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode()&os.ModeDevice == 0 {
		return f, nil
	}
	d, err := os.OpenFile(f.Name(), os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: opening for direct reads: %w", f.Name(), err)
	}
	return &blockDevice{f: f, direct: d}, nil
}

// Close closes both descriptors.
func (d *blockDevice) Close() error { return errors.Join(d.direct.Close(), d.f.Close()) }

// ReadAt reads through the page cache.
func (d *blockDevice) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

// readFresh reads what is on dev now: with O_DIRECT from a block device,
// through the (coherent) page cache from anything else.
func readFresh(dev Device, p []byte, off int64) (int, error) {
	if d, ok := dev.R.(*blockDevice); ok {
		return d.readDirect(p, off)
	}
	return dev.R.ReadAt(p, off)
}

// dropCache drops the device's cached pages (clean pages, all a reader ever
// leaves), so that the next read comes from the device.
func (d *blockDevice) dropCache() { d.dropRange(0, 0) }

// dropRange drops the cached pages of [off, off+n) (n 0: to the end).
func (d *blockDevice) dropRange(off, n int64) {
	unix.Fadvise(int(d.f.Fd()), off, n, unix.FADV_DONTNEED)
}

// directBufs holds aligned bounce buffers of directChunk bytes.
const directChunk = 64 << 10 // superblocks are 4 KiB

var directBufs = sync.Pool{New: func() any {
	b := alignedBuf(directChunk)
	return &b
}}

// alignedBuf returns n bytes that start at a directAlign boundary.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	if off != 0 {
		off = directAlign - off
	}
	return b[off : off+n : off+n]
}

// readDirect reads p at off with O_DIRECT through an aligned bounce buffer,
// in pieces of at most directChunk bytes.
func (d *blockDevice) readDirect(p []byte, off int64) (int, error) {
	bp := directBufs.Get().(*[]byte)
	defer directBufs.Put(bp)
	buf := *bp
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		start := pos &^ (directAlign - 1)
		skip := int(pos - start)
		want := min(len(p)-done, directChunk-skip)
		n := (skip + want + directAlign - 1) &^ (directAlign - 1)
		got, err := d.direct.ReadAt(buf[:n], start)
		if got < skip+want {
			if got > skip {
				done += copy(p[done:], buf[skip:got])
			}
			if err == nil {
				err = io.EOF
			}
			return done, err
		}
		done += copy(p[done:], buf[skip:skip+want])
	}
	return done, nil
}
