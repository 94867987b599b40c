package btrfsread

import (
	"container/list"
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
// it was several commits ago. So a block device is read with O_DIRECT only,
// which always shows what is on the device now. O_DIRECT is fast for large
// requests (measured here: 2.7 GB/s in 1 MiB reads) and slow for small ones
// (170 MB/s in 16 KiB reads: one round trip per tree block), so small reads
// are served from a few aligned windows of windowSize bytes, each filled by
// one O_DIRECT read: the reader's own page cache, which it can drop. It is
// dropped whole when a tree block or data sector fails validation
// (FS.dropCaches, before the block counts as bad), and where data without
// a checksum is about to be read (FS.dropCachedRange). Image files need
// none of this: the kernel writes them through the page cache (the loop
// driver), so buffered reads of them are coherent.

// directAlign is the alignment of O_DIRECT offsets, lengths and buffers
// (the logical block size of any device is at most 4 KiB).
const directAlign = 4096

// Windows: reads below directMin bytes are served from windows of
// windowSize bytes, at most maxWindows per device (LRU).
const (
	directMin  = 256 << 10
	windowSize = 1 << 20
	maxWindows = 16
)

// blockDevice reads a block device with O_DIRECT. Close closes direct only
// (the *os.File Open made is closed by Open's owner).
type blockDevice struct {
	direct *os.File

	mu      sync.Mutex
	windows map[int64]*window // by index (offset / windowSize)
	lru     list.List         // of *window, most recently used first
}

// window is windowSize bytes of the device from off, or fewer at its end.
type window struct {
	idx   int64
	elem  *list.Element
	ready chan struct{} // closed once data and err are set
	data  []byte
	err   error
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
	return &blockDevice{direct: d, windows: map[int64]*window{}}, nil
}

func (d *blockDevice) Close() error { return d.direct.Close() }

// ReadAt reads what is on the device: large reads directly, small ones
// through the windows.
func (d *blockDevice) ReadAt(p []byte, off int64) (int, error) {
	if len(p) >= directMin {
		return d.readDirect(p, off)
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		w := d.window(pos / windowSize)
		<-w.ready
		in := int(pos % windowSize)
		if in >= len(w.data) {
			if w.err != nil {
				return done, w.err
			}
			return done, io.EOF
		}
		done += copy(p[done:], w.data[in:])
	}
	return done, nil
}

// window returns the window idx, starting its read if it is not cached,
// and the read of the next one: readers of file data go forward.
func (d *blockDevice) window(idx int64) *window {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.windows[idx]
	if w != nil {
		d.lru.MoveToFront(w.elem)
	} else {
		w = d.fill(idx)
	}
	if d.windows[idx+1] == nil {
		d.fill(idx + 1)
	}
	return w
}

// fill caches a new window idx and starts reading it (d.mu held).
func (d *blockDevice) fill(idx int64) *window {
	w := &window{idx: idx, ready: make(chan struct{})}
	w.elem = d.lru.PushFront(w)
	d.windows[idx] = w
	for d.lru.Len() > maxWindows {
		d.forget(d.lru.Back().Value.(*window))
	}
	go func() {
		buf := alignedBuf(windowSize)
		n, err := d.direct.ReadAt(buf, idx*windowSize)
		w.data = buf[:n]
		if err != nil && !(err == io.EOF && n > 0) {
			w.err = fmt.Errorf("read at %d: %w", idx*windowSize, err)
			d.mu.Lock()
			if d.windows[idx] == w {
				d.forget(w) // errors are not cached
			}
			d.mu.Unlock()
		}
		close(w.ready)
	}()
	return w
}

// forget drops w from the cache (d.mu held); readers holding it finish.
func (d *blockDevice) forget(w *window) {
	d.lru.Remove(w.elem)
	delete(d.windows, w.idx)
}

// readFresh reads what is on dev now: past the windows from a block device,
// through the (coherent) page cache from anything else.
func readFresh(dev Device, p []byte, off int64) (int, error) {
	if d, ok := dev.R.(*blockDevice); ok {
		return d.readDirect(p, off)
	}
	return dev.R.ReadAt(p, off)
}

// dropCache forgets every window.
func (d *blockDevice) dropCache() { d.dropRange(0, 1<<62) }

// dropRange forgets the windows that overlap [off, off+n).
func (d *blockDevice) dropRange(off, n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.windows {
		if w.idx*windowSize < off+n && off < (w.idx+1)*windowSize {
			d.forget(w)
		}
	}
}

// directBufs holds aligned bounce buffers of directChunk bytes.
const directChunk = 4 << 20

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
