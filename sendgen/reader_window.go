package sendgen

import (
	"cmp"
	"errors"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// The window of a sequential reader: the stream cut into aligned blocks of
// blockSize bytes, those around the last read kept, those ahead of it
// filled before they are asked for. How far ahead grows with every read in
// the window, up to maxAhead blocks, so a reader that stops early (a file
// manager sniffing a type) costs little. The blocks are filled by a feed
// (reader_feed.go), WriteTo's pipeline writing into them in order, unless
// the stream's plan is already whole: then by worker goroutines from the
// plan, which costs no engine pass.
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
	// The kernel's readahead requests overtake each other on a loaded
	// machine, several MiB apart with many readers, and they are not
	// always aligned on blocks. A read at most maxAhead blocks past the
	// window's end extends it (the blocks between are filled in order),
	// and a block behind the last read is kept for the requests still on
	// their way until reads have taken all of it, or for maxBehind blocks.
	// One that reads took whole stays keepTaken blocks: the kernel asks
	// again for pages it dropped from its cache before the reader got to
	// them (with streams bigger than the memory), as far back as its
	// readahead runs ahead of the reader: 1 MiB (raiseReadahead in
	// fusefs), seen 1 to 3 blocks back. A request for a block dropped
	// since, up to maxBehind blocks behind the window, is served by a feed
	// of its own that stops once its blocks are filled (refetch): an
	// engine pass up to there without data, rather than the stream's plan
	// (80 MiB per 100,000 files), and the window stays as it is. A request
	// that comes later still is a read of its own, which builds the plan
	// or, close to the last read, starts the pass again.
	maxBehind = maxAhead
	keepTaken = 2
	// maxReadAhead bounds the blocks of all windows of the process
	// together: past it, windows make only the blocks read, none ahead, so
	// memory stays bounded whatever the number of readers (8 readers hold
	// about 24 blocks at and just behind their reads; their feeds then
	// fill each block as it is read, from WriteTo's queue, which still
	// runs ahead).
	maxReadAhead = 24
)

// blocksLive counts the blocks of all windows (maxReadAhead).
var blocksLive atomic.Int64

var blockPool = sync.Pool{New: func() any {
	b := make([]byte, blockSize)
	return &b
}}

// block is blockSize bytes of the stream at k*blockSize (fewer at the
// end, none past it). Whoever claims it fills it, sets data and err and
// closes done; they do not change after. Each holder of a reference (the
// window, a reader, a worker, a feed) releases it; the last one returns
// the buffer to the pool.
type block struct {
	k       int64
	claimed atomic.Bool
	done    chan struct{}
	buf     *[]byte
	data    []byte
	err     error
	refs    atomic.Int32
	taken   [blockSize / takenPage / 64]uint64 // pages reads took whole, under the window's mu
}

// takenPage is the unit in which a block notes what reads took: the
// kernel's page, which its requests are aligned on (not on blocks).
const takenPage = 4096

// took notes that a read took the block's bytes [from, to), offsets in the
// block: the pages wholly inside.
func (b *block) took(from, to int64) {
	for p := (from + takenPage - 1) / takenPage; p < to/takenPage; p++ {
		b.taken[p/64] |= 1 << (p % 64)
	}
}

// takenWhole reports whether reads took every page of the block.
func (b *block) takenWhole() bool {
	return !slices.ContainsFunc(b.taken[:], func(w uint64) bool { return w != math.MaxUint64 })
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

// complete publishes the block's bytes (or err) to its readers.
func (b *block) complete(err error) {
	b.err = err
	close(b.done)
}

// window is a Reader's run of consecutive blocks, the first at index lo.
type window struct {
	mu      sync.Mutex
	blocks  []*block
	lo      int64
	ahead   int   // blocks to fill past the last read
	next    int64 // where the last read ended, -1 before the first
	workers int   // goroutines filling this window's blocks from the plan
	feed    *feed // fills the blocks instead, nil if none
}

// acquire returns, with a reference each, the blocks holding [off, end)
// when the read continues a sequential pass or is the Reader's first
// (opening or moving the window), or nil when it is a read of its own.
func (r *Reader) acquire(off, end int64) []*block {
	w := &r.win
	w.mu.Lock()
	defer w.mu.Unlock()
	first := w.next < 0
	near := !first && off >= w.next-nearBlocks*blockSize && off <= w.next+nearBlocks*blockSize
	w.next = end
	if end-off > maxWindowRead {
		return nil
	}
	lo, last := off/blockSize, (end-1)/blockSize
	// A read at most maxAhead past the window's end (overtaking one that
	// is still on its way) extends it: the blocks between are made too,
	// and a feed goes on filling them in order.
	inside := len(w.blocks) > 0 && lo >= w.lo && lo <= w.lo+int64(len(w.blocks))+maxAhead
	switch {
	case inside:
	case w.feed != nil && lo < w.lo && lo >= w.lo-maxBehind:
		return r.refetch(lo, last)
	case near || first:
		w.reset()
		w.lo = lo
		if !r.s.planWhole(r.ctx) {
			w.feed = r.startFeed(lo)
		}
	default:
		return nil
	}
	w.dropBehind(lo)
	w.ahead = min(maxAhead, max(1, 2*w.ahead))
	lastBlock := int64(math.MaxInt64)
	if n := r.s.knownSize(); n > 0 {
		lastBlock = (n - 1) / blockSize
	}
	for k := w.lo + int64(len(w.blocks)); k <= min(last+int64(w.ahead), lastBlock); k++ {
		if k > last && blocksLive.Load() >= maxReadAhead {
			break
		}
		b := newBlock(k)
		if w.feed != nil {
			b.claimed.Store(true)
			w.feed.add(b)
		}
		w.blocks = append(w.blocks, b)
	}
	if last-w.lo >= int64(len(w.blocks)) {
		return nil // past the stream's end
	}
	held := slices.Clone(w.blocks[lo-w.lo : last-w.lo+1])
	for _, b := range held {
		b.refs.Add(1)
		b.took(max(off-b.k*blockSize, 0), min(end-b.k*blockSize, blockSize))
	}
	if w.feed == nil && len(w.blocks) > int(last-w.lo+1) {
		w.startWorkers(r)
	}
	return held
}

// refetch returns, with a reference each, blocks lo to last filled by a
// feed of their own, outside the window, which stops once they are.
func (r *Reader) refetch(lo, last int64) []*block {
	f := r.startFeed(lo)
	held := make([]*block, 0, last-lo+1)
	for k := lo; k <= last; k++ {
		b := newBlock(k)
		b.claimed.Store(true)
		f.add(b)
		held = append(held, b)
	}
	go func() {
		<-held[len(held)-1].done
		f.stop()
	}()
	return held
}

// dropBehind releases the blocks before block lo that no request on its
// way will want (maxBehind).
func (w *window) dropBehind(lo int64) {
	n := 0
	for n < len(w.blocks) && (lo-w.blocks[n].k > keepTaken && w.blocks[n].takenWhole() || lo-w.blocks[n].k > maxBehind) {
		n++
	}
	w.drop(n)
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

// reset empties the window and stops its feed.
func (w *window) reset() {
	w.drop(len(w.blocks))
	w.ahead = 0
	if w.feed != nil {
		w.feed.stop()
		w.feed = nil
	}
}

// startWorkers tops the window's workers up to one per processor.
func (w *window) startWorkers(r *Reader) {
	for ; w.workers < runtime.GOMAXPROCS(0); w.workers++ {
		go r.work()
	}
}

// work fills the window's unclaimed blocks from the plan, first to last,
// each while holding a slot, until none is left.
func (r *Reader) work() {
	for {
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

// fillBlock fills a block its caller claimed from the plan.
func (r *Reader) fillBlock(b *block, help bool) {
	off := b.k * blockSize
	pl, err := r.cover(off + blockSize)
	if err == nil && off < pl.size {
		b.buf = blockPool.Get().(*[]byte)
		b.data = (*b.buf)[:min(blockSize, pl.size-off)]
		err = pl.fill(b.data, off, help)
	}
	b.complete(err)
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

// fromBlocks serves [off, off+len(buf)) from the blocks acquire returned:
// lent from a single block, else copied into buf. A feed stopped before it
// filled them (the window moved) gives errFeedStopped.
func (r *Reader) fromBlocks(buf []byte, off int64, blocks []*block) (View, error) {
	end := off + int64(len(buf))
	if len(blocks) == 1 {
		b := blocks[0]
		if err := r.await(b); err != nil {
			b.release()
			return View{}, err
		}
		start := b.k * blockSize
		to := min(end-start, int64(len(b.data)))
		if off-start >= to {
			b.release()
			return View{}, errPastEnd
		}
		return View{Data: b.data[off-start : to : to], block: b}, nil
	}
	var err error
	n := int64(0) // bytes of buf filled from off on
	for _, b := range blocks {
		if bErr := r.await(b); bErr != nil {
			err = cmp.Or(err, bErr)
		} else if err == nil {
			start := b.k * blockSize
			from, to := max(off, start), min(end, start+int64(len(b.data)))
			if from == off+n && to > from {
				copy(buf[from-off:to-off], b.data[from-start:])
				n = to - off
			}
		}
		b.release()
	}
	switch {
	case err != nil:
		return View{}, err
	case n == 0:
		return View{}, errPastEnd
	}
	return View{Data: buf[:n]}, nil
}

// errPastEnd: the blocks of a read lie past the stream's end.
var errPastEnd = errors.New("sendgen: read past the end of the stream")

// forget closes the window if it still holds the failed block b.
func (w *window) forget(b *block) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if i := b.k - w.lo; i >= 0 && i < int64(len(w.blocks)) && w.blocks[i] == b {
		w.reset()
	}
}
