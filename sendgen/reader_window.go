package sendgen

import (
	"cmp"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// The window of a sequential reader: the stream cut into aligned blocks of
// blockSize bytes, those around the last read kept, those ahead of it
// filled by worker goroutines before they are asked for. How far ahead
// grows with every read in the window, up to maxAhead blocks, so a reader
// that stops early (a file manager sniffing a type) costs little.
const (
	blockSize = 1 << 20 // FUSE's largest READ, which the kernel aligns on it
	// maxAhead: blocks filled past the last read. 8 MiB keeps the workers
	// ahead of FUSE; 16 measured no faster and slightly more CPU (likely
	// the blocks leaving the CPU caches before the kernel copies them).
	maxAhead = 8
	// maxWindowRead: larger reads fill the caller's buffer directly, so
	// the window stays bounded.
	maxWindowRead = 4 * blockSize
	// nearBlocks: a read starting this close to where the last one ended
	// opens a window. The kernel's asynchronous readahead requests arrive
	// slightly out of order, so "exactly there" would miss some.
	nearBlocks = 2
	// maxReadAhead bounds the blocks of all windows of the process
	// together: past it, windows fill only the blocks read, none ahead, so
	// memory stays bounded whatever the number of readers.
	maxReadAhead = 64
)

// blocksLive counts the blocks of all windows (maxReadAhead).
var blocksLive atomic.Int64

var blockPool = sync.Pool{New: func() any {
	b := make([]byte, blockSize)
	return &b
}}

// block is blockSize bytes of the stream at k*blockSize (fewer at the
// end). Whoever claims it fills it, sets data and err and closes done;
// they do not change after. Each holder of a reference (the window, a
// reader, a worker) releases it; the last one returns the buffer to the
// pool.
type block struct {
	k       int64
	claimed atomic.Bool
	done    chan struct{}
	buf     *[]byte
	data    []byte
	err     error
	refs    atomic.Int32
}

func newBlock(k int64) *block {
	b := &block{k: k, done: make(chan struct{})}
	b.refs.Store(1)
	blocksLive.Add(1)
	return b
}

func (b *block) release() {
	if b.refs.Add(-1) != 0 {
		return
	}
	blocksLive.Add(-1)
	if b.buf != nil {
		blockPool.Put(b.buf)
	}
}

// window is a Reader's run of consecutive blocks, the first at index lo.
type window struct {
	mu      sync.Mutex
	blocks  []*block
	lo      int64
	ahead   int   // blocks to fill past the last read
	next    int64 // where the last read ended, -1 before the first
	workers int   // goroutines filling this window's blocks
}

// acquire returns, with a reference each, the blocks holding [off, end)
// when the read continues a sequential pass (opening or moving the
// window), or nil when it is a read of its own. pl covers at least
// [off, end).
func (r *Reader) acquire(off, end int64, pl *plan) []*block {
	w := &r.win
	w.mu.Lock()
	defer w.mu.Unlock()
	near := w.next >= 0 && off >= w.next-nearBlocks*blockSize && off <= w.next+nearBlocks*blockSize
	w.next = end
	if end-off > maxWindowRead {
		return nil
	}
	first, last := off/blockSize, (end-1)/blockSize
	inside := len(w.blocks) > 0 && first >= w.lo && first <= w.lo+int64(len(w.blocks))
	switch {
	case inside:
	case near:
		w.drop(len(w.blocks))
		w.lo, w.ahead = first, 0
	default:
		return nil
	}
	// Keep the block before this read: a request arriving out of order
	// still finds it.
	w.drop(int(min(max(first-1-w.lo, 0), int64(len(w.blocks)))))
	if len(w.blocks) == 0 {
		w.lo = first
	}
	w.ahead = min(maxAhead, max(1, 2*w.ahead))
	lastBlock := int64(math.MaxInt64)
	if pl.whole {
		lastBlock = (pl.size - 1) / blockSize
	}
	for k := w.lo + int64(len(w.blocks)); k <= min(last+int64(w.ahead), lastBlock); k++ {
		if k > last && blocksLive.Load() >= maxReadAhead {
			break
		}
		w.blocks = append(w.blocks, newBlock(k))
	}
	held := slices.Clone(w.blocks[first-w.lo : last-w.lo+1])
	for _, b := range held {
		b.refs.Add(1)
	}
	if len(w.blocks) > int(last-w.lo+1) {
		w.startWorkers(r)
	}
	return held
}

// drop releases the first n blocks of the window.
func (w *window) drop(n int) {
	for _, b := range w.blocks[:n] {
		b.release()
	}
	clear(w.blocks[:n])
	w.blocks = w.blocks[n:]
	w.lo += int64(n)
}

// startWorkers tops the window's workers up to one per processor.
func (w *window) startWorkers(r *Reader) {
	for ; w.workers < runtime.GOMAXPROCS(0); w.workers++ {
		go r.work()
	}
}

// work fills the window's unclaimed blocks, first to last, each while
// holding a slot, until none is left. It waits for the plan to cover the
// next block before it takes a slot.
func (r *Reader) work() {
	for {
		if k := r.win.firstUnclaimed(); k >= 0 {
			r.cover((k + 1) * blockSize) // an error is met again by fillBlock
		}
		materializeSlots <- struct{}{}
		b := r.win.claimNext()
		if b == nil {
			<-materializeSlots
			return
		}
		r.fillBlock(b, false)
		<-materializeSlots
		b.release()
	}
}

// claimNext claims the window's first unclaimed block, with a reference,
// or retires the calling worker when there is none.
func (w *window) claimNext() *block {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.blocks {
		if b.claimed.CompareAndSwap(false, true) {
			b.refs.Add(1)
			return b
		}
	}
	w.workers--
	return nil
}

// firstUnclaimed is the index of the window's first unclaimed block, -1
// if none.
func (w *window) firstUnclaimed() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.blocks {
		if !b.claimed.Load() {
			return b.k
		}
	}
	return -1
}

// fillBlock fills a block its caller claimed, once the plan covers it (a
// block past the end of the stream is empty).
func (r *Reader) fillBlock(b *block, help bool) {
	off := b.k * blockSize
	pl, err := r.cover(off + blockSize)
	if err == nil {
		b.buf = blockPool.Get().(*[]byte)
		b.data = (*b.buf)[:max(0, min(blockSize, pl.size-off))]
		err = pl.fill(b.data, off, help)
	}
	b.err = err
	close(b.done)
}

// await returns once b is filled, filling it itself if nobody has
// claimed it yet. A failed block closes the window, so that a retry starts
// afresh.
func (r *Reader) await(b *block) error {
	if b.claimed.CompareAndSwap(false, true) {
		r.fillBlock(b, true)
	}
	<-b.done
	if b.err != nil {
		r.win.forget(b)
	}
	return b.err
}

// copyBlocks fills p from the blocks acquire returned and releases them.
func (r *Reader) copyBlocks(p []byte, off int64, blocks []*block) error {
	var err error
	for _, b := range blocks {
		if bErr := r.await(b); bErr != nil {
			err = cmp.Or(err, bErr)
		} else if err == nil {
			start := b.k * blockSize
			from, to := max(off, start), min(off+int64(len(p)), start+int64(len(b.data)))
			copy(p[from-off:to-off], b.data[from-start:])
		}
		b.release()
	}
	return err
}

// forget closes the window if it still holds the failed block b.
func (w *window) forget(b *block) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if i := b.k - w.lo; i >= 0 && i < int64(len(w.blocks)) && w.blocks[i] == b {
		w.drop(len(w.blocks))
		w.ahead = 0
	}
}
