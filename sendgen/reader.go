package sendgen

import (
	"container/list"
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// Random access: a Reader copies metadata straight from the plan and
// materializes data commands on demand through a small cache of recent
// commands. A read materializes its commands itself, in order, helped by
// extra goroutines when slots are free; a sequential reader also gets the
// data commands ahead of it materialized in the background.
const (
	cacheEntries   = 64      // materialized data commands kept per Reader (≤ 4 MiB in protocol 1)
	readAheadBytes = 2 << 20 // how far ahead of a sequential reader commands are started
	// readAheadCmds caps read-ahead in commands too: started commands must
	// stay in the cache until read, or small commands would thrash it.
	readAheadCmds = cacheEntries / 2
)

// materializeSlots bounds the goroutines materializing data commands for
// all readers besides the reading goroutines themselves: reading and
// decompressing is CPU work.
var materializeSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// Reader serves any byte range of a stream; safe for concurrent use.
type Reader struct {
	plan  *plan
	cache cmdCache
	next  atomic.Int64 // where the last read ended: a read starting here is sequential (0 at first)
}

// NewReader prepares random access to the stream (building its command index
// on first use, shared by all readers of s).
func (s *Stream) NewReader(ctx context.Context) (*Reader, error) {
	p, err := s.getPlan(ctx)
	if err != nil {
		return nil, err
	}
	return &Reader{plan: p, cache: cmdCache{entries: make(map[cmdKey]*cmdEntry)}}, nil
}

// Size is the stream's length.
func (r *Reader) Size() int64 { return r.plan.size }

// piece is the part of one data command a read copies.
type piece struct {
	e        *cmdEntry
	dst, src int
	n        int
}

// ReadAt reads len(p) bytes at off, like io.ReaderAt.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	pl := r.plan
	if off < 0 {
		return 0, errors.New("sendgen: negative read offset")
	}
	if off >= pl.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	want := int(min(int64(len(p)), pl.size-off))
	end := off + int64(want)

	// Collect the data commands the range needs, copying metadata on the
	// way; then materialize (or wait for) the data commands in order.
	var pieces []piece
	r.visit(off, end, func(si, i int, cmdOff int64, seg *segment) bool {
		from, to := max(off, cmdOff), end
		if seg.run == nil {
			copy(p[from-off:to-off], seg.meta[from-cmdOff:])
			return true
		}
		e := r.cache.get(cmdKey{si, i})
		pieces = append(pieces, piece{e: e, dst: int(from - off), src: int(from - cmdOff), n: int(min(to, cmdOff+cmdLenAt(seg, i)) - from)})
		return true
	})
	if len(pieces) > 1 {
		r.help(pieces[1:])
	}
	if r.next.Swap(end) == off {
		r.readAhead(end)
	}
	// On error, still finish every piece: failed entries then have left
	// the cache, and a retry starts afresh.
	var err error
	for _, pc := range pieces {
		r.materialize(pc.e)
		<-pc.e.done
		if err == nil {
			err = pc.e.err
		}
		if err == nil {
			copy(p[pc.dst:pc.dst+pc.n], pc.e.buf[pc.src:])
		}
	}
	if err != nil {
		return 0, err
	}
	if want < len(p) {
		return want, io.EOF
	}
	return want, nil
}

// help starts goroutines, as many as free slots allow, that materialize the
// pieces in order alongside the reading goroutine.
func (r *Reader) help(pieces []piece) {
	for range min(len(pieces), cap(materializeSlots)) {
		select {
		case materializeSlots <- struct{}{}:
		default:
			return
		}
		go func() {
			defer func() { <-materializeSlots }()
			for _, pc := range pieces {
				r.materialize(pc.e)
			}
		}()
	}
}

// readAhead materializes the data commands after a sequential read in the
// background. Its goroutines wait for slots: every entry they create must
// be materialized by someone, and no reader may be waiting for them.
func (r *Reader) readAhead(from int64) {
	var ahead []*cmdEntry
	r.visit(from, min(from+readAheadBytes, r.plan.size), func(si, i int, _ int64, seg *segment) bool {
		if seg.run != nil {
			if e := r.cache.get(cmdKey{si, i}); !e.claimed.Load() {
				ahead = append(ahead, e)
			}
		}
		return len(ahead) < readAheadCmds
	})
	for range min(len(ahead), cap(materializeSlots)) {
		go func() {
			materializeSlots <- struct{}{}
			defer func() { <-materializeSlots }()
			for _, e := range ahead {
				r.materialize(e)
			}
		}()
	}
}

// materialize computes e unless someone else already claimed it. A failed
// entry leaves the cache once done, so a later read retries.
func (r *Reader) materialize(e *cmdEntry) {
	if !e.claimed.CompareAndSwap(false, true) {
		return
	}
	e.buf, e.err = r.plan.materialize(e.key.seg, e.key.i)
	r.cache.finished(e)
	close(e.done)
}

// visit calls fn for every metadata segment and every data command that
// overlaps [off, end), in stream order, with where it starts, until fn
// returns false.
func (r *Reader) visit(off, end int64, fn func(si, i int, start int64, seg *segment) bool) {
	pl := r.plan
	for si := pl.find(off); si < len(pl.segs) && pl.segs[si].off < end; si++ {
		seg := &pl.segs[si]
		if seg.run == nil {
			if !fn(si, 0, seg.off, seg) {
				return
			}
			continue
		}
		i, start := seg.run.locate(max(off, seg.off) - seg.off)
		for ; i < seg.run.n && seg.off+start < end; i++ {
			if !fn(si, i, seg.off+start, seg) {
				return
			}
			start += seg.run.cmdLen
		}
	}
}

// cmdLenAt is the encoded length of command i of a data segment.
func cmdLenAt(seg *segment, i int) int64 {
	if i == seg.run.n-1 {
		return seg.run.lastCmdLen
	}
	return seg.run.cmdLen
}

// cmdKey names one data command of a plan: segment and index in its run.
type cmdKey struct{ seg, i int }

// cmdEntry is one data command, materialized or not yet. Whoever claims
// it materializes it, sets buf and err and closes done; neither changes
// after. Entries are not recycled, so a reader still copying from an
// evicted entry is safe.
type cmdEntry struct {
	key     cmdKey
	claimed atomic.Bool
	done    chan struct{}
	buf     []byte
	err     error
	lru     *list.Element // in the cache's LRU list once materialized
}

// cmdCache holds the recent data commands of one Reader, so that
// concurrent and repeated requests for one command share its work. Entries
// being materialized are only in the map; materialized ones are also in an
// LRU list bounded by cacheEntries.
type cmdCache struct {
	mu      sync.Mutex
	entries map[cmdKey]*cmdEntry
	lru     list.List // of *cmdEntry, most recently used first
}

// get returns the entry for k, adding an unclaimed one if there is none.
func (c *cmdCache) get(k cmdKey) *cmdEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		if e.lru != nil {
			c.lru.MoveToFront(e.lru)
		}
		return e
	}
	e := &cmdEntry{key: k, done: make(chan struct{})}
	c.entries[k] = e
	return e
}

// finished records a materialized entry: kept if it succeeded (evicting
// the least recently used beyond cacheEntries), dropped if it failed so
// that a later read retries.
func (c *cmdCache) finished(e *cmdEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[e.key] != e {
		return
	}
	if e.err != nil {
		delete(c.entries, e.key)
		return
	}
	e.lru = c.lru.PushFront(e)
	for c.lru.Len() > cacheEntries {
		old := c.lru.Remove(c.lru.Back()).(*cmdEntry)
		delete(c.entries, old.key)
	}
}
