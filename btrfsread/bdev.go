package btrfsread

import (
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reading a block device that the kernel has mounted: btrfs writes it with
// bios that bypass the device's page cache, so pages that any process read
// before keep their old contents. A buffered read can then return a block
// as it was several commits ago. Two ways out were measured on an idle
// loop device (README, "Live filesystems"): reading everything with
// O_DIRECT makes every 16 KiB tree block a round trip to the device (slow),
// while buffered reads keep the kernel's read-ahead. So a block device is
// read buffered, except that
//   - large reads (file data) go through O_DIRECT, which is both coherent
//     and several times faster than buffered reads of a cold device;
//   - the superblock and data without a checksum are always read with
//     O_DIRECT (nothing could tell that they are stale);
//   - a tree block or data sector that fails validation makes the reader
//     drop the device's cached pages and read again (dropCaches) before it
//     counts as bad: a stale page fails its checksum, bytenr or generation.
// Image files need none of this: the kernel writes them through the page
// cache (the loop driver), so buffered reads of them are coherent.

// directAlign is the alignment of O_DIRECT offsets, lengths and buffers
// (the logical block size of any device is at most 4 KiB).
const directAlign = 4096

// directMin is the read size from which a block device is read with
// O_DIRECT: below it the kernel's read-ahead wins, above it the copy
// through the page cache costs more than the round trip.
const directMin = 256 << 10

// blockDevice reads a block device: buffered through f, or with O_DIRECT
// through direct. Close closes direct only (f is the caller's).
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

func (d *blockDevice) Close() error { return d.direct.Close() }

// ReadAt reads buffered, or with O_DIRECT for large reads.
func (d *blockDevice) ReadAt(p []byte, off int64) (int, error) {
	if len(p) >= directMin {
		return d.readDirect(p, off)
	}
	return d.f.ReadAt(p, off)
}

// readFresh reads what is on dev now: with O_DIRECT from a block device,
// through the (coherent) page cache from anything else.
func readFresh(dev Device, p []byte, off int64) (int, error) {
	if d, ok := dev.R.(*blockDevice); ok {
		return d.readDirect(p, off)
	}
	return dev.R.ReadAt(p, off)
}

// dropCache drops the device's cached pages (only clean pages, which are
// all a reader ever leaves behind), so that the next buffered read comes
// from the device.
func (d *blockDevice) dropCache() {
	unix.Fadvise(int(d.f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// dropRange drops the cached pages of [off, off+n).
func (d *blockDevice) dropRange(off, n int64) {
	unix.Fadvise(int(d.f.Fd()), off, n, unix.FADV_DONTNEED)
}

// directBufs holds aligned bounce buffers of directChunk bytes.
const directChunk = 4 << 20

var directBufs = sync.Pool{New: func() any {
	b := make([]byte, directChunk+directAlign)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	if off != 0 {
		off = directAlign - off
	}
	b = b[off : off+directChunk]
	return &b
}}

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
