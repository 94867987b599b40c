package btrfsread

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"sendfs/internal/lru"

	"golang.org/x/sys/unix"
)

// Reading a block device. Its page cache is both slow and unsafe here:
// buffered reads of a loop device ran at ~300 MB/s from a dropped cache
// while O_DIRECT reads of 64 KiB ran at ~2.8 GB/s and of 1 MiB at ~5 GB/s
// (BenchmarkLiveDevice; README, "Live filesystems"), and the kernel writes a filesystem it has mounted with
// bios that bypass that cache, so a page read before can hold a block as it
// was several commits ago. So a block device is read only with O_DIRECT:
//   - through windows: aligned 64 KiB pieces of the device, read once and
//     kept in a byte-bounded cache of the device's own (windowCacheBytes),
//     so that the tree blocks and small extents that share a window cost
//     one read; the buffer of a window the cache drops is used again once
//     no reader holds it (a send reads gigabytes through them);
//   - with read-ahead: a read that enters a window whose three
//     predecessors are cached is sequential, and the next windows are read
//     ahead in large batches (one 1 MiB preadv into 16 windows), a few
//     batches in flight, so that walking a tree written in order or
//     sending a file's data keeps the device busy with large reads (with
//     fewer predecessors, random reads of neighbouring tree blocks, as an
//     incremental send makes, started big reads they then waited behind);
//     a walk reads the leaves under the node it is in ahead
//     (readAheadLeaves);
//   - coherently: a window holds what the device held when it was read.
//     A tree block or data sector that fails validation makes the reader
//     drop every window (FS.dropCaches) and read again before it counts as
//     bad: a stale window fails the block's checksum, or the bytenr or
//     generation its pointer promised, and one that passes is the same
//     block. Data without a checksum and the superblock, which nothing
//     could show stale, are read past the windows (readFresh).
//
// Image files are read through the page cache: the kernel writes them
// through it too (the loop driver), so buffered reads of them are coherent,
// and a warm page cache is faster than any read of ours.

// directAlign is the alignment of O_DIRECT offsets, lengths and buffers
// (the logical block size of any device is at most 4 KiB).
const directAlign = 4096

const (
	// windowSize is the unit a block device is read and cached in.
	windowSize = 64 << 10
	// windowCacheBytes bounds the windows kept per block device: 512.
	windowCacheBytes = 32 << 20
	// readAheadBatch is how many windows one read-ahead reads (1 MiB).
	readAheadBatch = 16
	// readAheadWindows is how far ahead of a sequential reader windows
	// are read (2 MiB): a batch starts when less than
	// readAheadWindows-readAheadBatch windows ahead are cached or coming.
	readAheadWindows = 2 * readAheadBatch
	// sequentialWindows is how many windows before the one a read enters
	// must be cached for the read to count as sequential.
	sequentialWindows = 3
	// maxReadAheads bounds the batches in flight per device (8 MiB).
	maxReadAheads = 8
)

// blockDevice reads a block device with O_DIRECT through a cache of
// windows. Close closes both descriptors (f is Open's).
type blockDevice struct {
	f      *os.File
	direct *os.File
	size   int64

	// windows is replaced as a whole when it may be stale (dropCache):
	// a read-ahead in flight then fills the old cache, which no one reads.
	windows atomic.Pointer[lru.Cache[int64, *window]]
	last    atomic.Int64 // the window read last, -1 at first
	slots   chan struct{}
	// readAheads counts the batches read ahead (tests see read-ahead).
	readAheads atomic.Int64

	mu      sync.Mutex
	pending map[int64]chan struct{} // windows a read-ahead is reading: closed when done
}

// coherentReader returns how to read f (size bytes): f itself for a regular
// file, a *blockDevice for a block device.
func coherentReader(f *os.File, size int64) (io.ReaderAt, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode()&os.ModeDevice == 0 {
		return f, nil
	}
	direct, err := os.OpenFile(f.Name(), os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: opening for direct reads: %w", f.Name(), err)
	}
	d := &blockDevice{f: f, direct: direct, size: size, slots: make(chan struct{}, maxReadAheads), pending: map[int64]chan struct{}{}}
	d.windows.Store(newWindowCache())
	d.last.Store(-1)
	return d, nil
}

func newWindowCache() *lru.Cache[int64, *window] {
	return lru.NewDropping[int64](windowCacheBytes, func(w *window) int64 { return int64(cap(w.b)) }, (*window).release)
}

// window is one window's bytes, in a buffer of directBufs that goes back
// there once neither the cache nor a reader holds it. A window is never
// used again after that: a reader that found it in the cache just before
// the cache dropped it fails to acquire it and looks again.
type window struct {
	b    []byte
	buf  *[]byte
	refs atomic.Int32 // the cache's reference and the readers'; 0 once released for good
}

// newWindow makes a window of the first n bytes of buf, held by the cache.
func newWindow(buf *[]byte, n int) *window {
	w := &window{b: (*buf)[:n], buf: buf}
	w.refs.Store(1)
	return w
}

// acquire takes a reader's reference, unless w was released for good.
func (w *window) acquire() bool {
	for {
		r := w.refs.Load()
		if r == 0 {
			return false
		}
		if w.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

func (w *window) release() {
	if w.refs.Add(-1) == 0 {
		directBufs.Put(w.buf)
	}
}

// Close closes both descriptors.
func (d *blockDevice) Close() error { return errors.Join(d.direct.Close(), d.f.Close()) }

// ReadAt reads p at off through the windows. A window that cannot be read
// whole (an I/O error in it, the end of the device) leaves the rest of the
// read to readDirect, which reads exactly p's range, so that an error is
// reported only for the bytes that have one.
func (d *blockDevice) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		w, err := d.window(pos / windowSize)
		skip := int(pos % windowSize)
		if err != nil || skip >= len(w.b) {
			if err == nil {
				w.release()
			}
			n, err := d.readDirect(p[done:], pos)
			return done + n, err
		}
		done += copy(p[done:], w.b[skip:])
		w.release()
	}
	return done, nil
}

// window returns window k, from the cache, from a read-ahead in flight, or
// read now, acquired.
func (d *blockDevice) window(k int64) (*window, error) {
	cache := d.windows.Load()
	if d.last.Swap(k) != k {
		d.readAhead(cache, k)
	}
	d.mu.Lock()
	wait := d.pending[k]
	d.mu.Unlock()
	if wait != nil {
		<-wait
	}
	for {
		w, err := cache.Get(k, func() (*window, error) {
			buf := directBufs.Get().(*[]byte)
			n, err := d.direct.ReadAt(*buf, k*windowSize)
			if n > 0 && errors.Is(err, io.EOF) {
				err = nil // the last window of the device
			}
			if err != nil {
				directBufs.Put(buf)
				return nil, err
			}
			return newWindow(buf, n), nil
		})
		if err != nil || w.acquire() {
			return w, err
		}
	}
}

// readAhead starts batches of read-ahead after window k when the read that
// enters k is sequential (the sequentialWindows windows before k are
// cached) and less than readAheadWindows-readAheadBatch windows after k
// are cached or coming.
func (d *blockDevice) readAhead(cache *lru.Cache[int64, *window], k int64) {
	for i := int64(1); i <= sequentialWindows; i++ {
		if k < i || !cache.Contains(k-i) {
			return
		}
	}
	const keep = readAheadWindows - readAheadBatch
	end := (d.size + windowSize - 1) / windowSize
	d.mu.Lock()
	defer d.mu.Unlock()
	j := k + 1
	for j < end && j-k <= keep && (d.pending[j] != nil || cache.Contains(j)) {
		j++
	}
	for j < end && j-k <= keep {
		n := min(readAheadBatch, end-j)
		if !d.startBatch(cache, j, n) {
			return
		}
		j += n
	}
}

// startBatch starts reading windows [first, first+n) ahead unless
// maxReadAheads batches are in flight already, and reports whether it
// did. d.mu is held.
func (d *blockDevice) startBatch(cache *lru.Cache[int64, *window], first, n int64) bool {
	select {
	case d.slots <- struct{}{}:
	default:
		return false
	}
	d.readAheads.Add(1)
	done := make(chan struct{})
	for i := first; i < first+n; i++ {
		d.pending[i] = done
	}
	go d.readBatch(cache, first, int(n), done)
	return true
}

// readAheadRanges starts reading ahead the windows that hold the ranges
// [off, off+n) of offs and are neither cached nor coming: runs of them
// (with gaps of at most one window read through, unless another batch is
// reading it) in batches of at most readAheadBatch windows, as far as
// maxReadAheads allows.
func (d *blockDevice) readAheadRanges(offs []int64, n int64) {
	cache := d.windows.Load()
	d.mu.Lock()
	defer d.mu.Unlock()
	var ws []int64
	for _, off := range offs {
		for k := off / windowSize; k <= (off+n-1)/windowSize; k++ {
			if d.pending[k] == nil && !cache.Contains(k) {
				ws = append(ws, k)
			}
		}
	}
	slices.Sort(ws)
	ws = slices.Compact(ws)
	for len(ws) > 0 {
		run := 1
		for run < len(ws) && ws[run]-ws[0] < readAheadBatch && (ws[run] == ws[run-1]+1 || ws[run] == ws[run-1]+2 && d.pending[ws[run]-1] == nil) {
			run++
		}
		if !d.startBatch(cache, ws[0], ws[run-1]-ws[0]+1) {
			return
		}
		ws = ws[run:]
	}
}

// readAheadLeaves starts reading, from block devices, the children of
// level-1 node n from slot from on whose keys are at most to and that are
// not cached: a walk that left one leaf of n goes on to the next ones, and
// reading them together turns many small reads into a few large ones
// when they lie close on disk.
func (fs *FS) readAheadLeaves(n *node, from int, to Key) {
	if !slices.ContainsFunc(fs.members, func(m *member) bool { _, ok := m.R.(*blockDevice); return ok }) {
		return
	}
	offs := map[*blockDevice][]int64{}
	for i := from; i < n.nritems && n.key(i).Compare(to) <= 0; i++ {
		bytenr, _ := n.ptr(i)
		c := fs.chunks.find(bytenr)
		if c == nil || fs.blocks.Contains(bytenr) {
			continue
		}
		pl, got := c.locate(bytenr-c.logical, uint64(fs.sb.nodeSize), 0)
		if pl.s.dev == nil || got < uint64(fs.sb.nodeSize) {
			continue
		}
		if bd, ok := pl.s.dev.R.(*blockDevice); ok {
			offs[bd] = append(offs[bd], int64(pl.physical))
		}
	}
	for bd, o := range offs {
		bd.readAheadRanges(o, int64(fs.sb.nodeSize))
	}
}

// readBatch reads windows [first, first+n) with one direct read into the
// cache, then closes done.
func (d *blockDevice) readBatch(cache *lru.Cache[int64, *window], first int64, n int, done chan struct{}) {
	bufs := make([]*[]byte, n)
	ws := make([][]byte, n)
	for i := range ws {
		bufs[i] = directBufs.Get().(*[]byte)
		ws[i] = *bufs[i]
	}
	// Through SyscallConn, which holds the descriptor: a Close meanwhile
	// waits for the read instead of letting the number be reused.
	got := -1
	if rc, err := d.direct.SyscallConn(); err == nil {
		rc.Read(func(fd uintptr) bool {
			got, _ = unix.Preadv(int(fd), ws, first*windowSize)
			return true
		})
	}
	for i, buf := range bufs {
		if got <= 0 {
			directBufs.Put(buf)
			continue
		}
		cache.Put(first+int64(i), newWindow(buf, min(got, windowSize)))
		got -= windowSize
	}
	d.mu.Lock()
	for i := range int64(n) {
		delete(d.pending, first+i)
	}
	d.mu.Unlock()
	close(done)
	<-d.slots
}

// readFresh reads what is on dev now: with O_DIRECT past the windows from
// a block device, through the (coherent) page cache from anything else.
func readFresh(dev Device, p []byte, off int64) (int, error) {
	if d, ok := dev.R.(*blockDevice); ok {
		return d.readDirect(p, off)
	}
	return dev.R.ReadAt(p, off)
}

// dropCache forgets every window, so that the next reads come from the
// device.
func (d *blockDevice) dropCache() { d.windows.Store(newWindowCache()) }

// directBufs holds aligned buffers of directChunk bytes: windows, and the
// bounce buffers of readDirect.
const directChunk = windowSize // superblocks are 4 KiB

var directBufs = sync.Pool{New: func() any {
	b := alignedBuf(directChunk)
	return &b
}}

// alignedBuf returns n bytes that start at a directAlign boundary. Go
// allocates big buffers on page boundaries; only when one is not is a
// bigger one cut to fit.
func alignedBuf(n int) []byte {
	b := make([]byte, n)
	if uintptr(unsafe.Pointer(unsafe.SliceData(b)))&(directAlign-1) == 0 {
		return b
	}
	b = make([]byte, n+directAlign)
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
