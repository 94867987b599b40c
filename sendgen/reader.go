package sendgen

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// Random access: a Reader copies metadata straight from the plan and
// materializes data commands on demand, in parallel, through a small cache
// of recent commands; a sequential reader also gets the data commands ahead
// of it started in the background.
const (
	cacheEntries   = 64      // materialized data commands kept per Reader (≤ 4 MiB in protocol 1)
	readAheadBytes = 1 << 20 // how far ahead of a sequential reader commands are started
)

// materializeSlots bounds the data commands materialized at once, across
// all readers: reading and decompressing is CPU work.
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
	r := &Reader{plan: p, cache: cmdCache{entries: make(map[cmdKey]*cmdEntry)}}
	return r, nil
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
	want := int(min(int64(len(p)), pl.size-off))
	end := off + int64(want)

	// Start every data command the range needs, copying metadata on the way;
	// then wait for and copy the data commands in order.
	var pieces []piece
	r.visit(off, end, func(si, i int, cmdOff int64, seg *segment) {
		from, to := max(off, cmdOff), end
		if seg.run == nil {
			copy(p[from-off:to-off], seg.meta[from-cmdOff:])
			return
		}
		e := r.cache.get(cmdKey{si, i}, pl)
		pieces = append(pieces, piece{e: e, dst: int(from - off), src: int(from - cmdOff), n: int(min(to, cmdOff+cmdLenAt(seg, i)) - from)})
	})
	if r.next.Swap(end) == off {
		r.visit(end, min(end+readAheadBytes, pl.size), func(si, i int, _ int64, seg *segment) {
			if seg.run != nil {
				r.cache.get(cmdKey{si, i}, pl)
			}
		})
	}
	// On error, still wait for every piece: failed entries then have left
	// the cache, and a retry starts afresh.
	var err error
	for _, pc := range pieces {
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

// visit calls fn for every metadata segment and every data command that
// overlaps [off, end), in stream order, with where it starts.
func (r *Reader) visit(off, end int64, fn func(si, i int, start int64, seg *segment)) {
	pl := r.plan
	for si := pl.find(off); si < len(pl.segs) && pl.segs[si].off < end; si++ {
		seg := &pl.segs[si]
		if seg.run == nil {
			fn(si, 0, seg.off, seg)
			continue
		}
		i, start := seg.run.locate(max(off, seg.off) - seg.off)
		for ; i < seg.run.n && seg.off+start < end; i++ {
			fn(si, i, seg.off+start, seg)
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

// cmdEntry is one materialized (or being materialized) data command. buf
// and err are set before done is closed and never change after; entries
// are not recycled, so a reader still copying from an evicted entry is safe.
type cmdEntry struct {
	done chan struct{}
	buf  []byte
	err  error
	used uint64 // last use, for eviction (under the cache's lock)
}

// cmdCache holds the recent data commands of one Reader, deduplicating
// concurrent requests for the same command.
type cmdCache struct {
	mu      sync.Mutex
	entries map[cmdKey]*cmdEntry
	clock   uint64
}

// get returns the entry for k, starting its materialization if it is not
// cached or in flight. A failed materialization is dropped from the cache
// once done, so a later read retries.
func (c *cmdCache) get(k cmdKey, pl *plan) *cmdEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock++
	if e, ok := c.entries[k]; ok {
		e.used = c.clock
		return e
	}
	e := &cmdEntry{done: make(chan struct{}), used: c.clock}
	c.entries[k] = e
	c.evict()
	go func() {
		materializeSlots <- struct{}{}
		e.buf, e.err = pl.materialize(k.seg, k.i)
		<-materializeSlots
		if e.err != nil {
			c.mu.Lock()
			if c.entries[k] == e {
				delete(c.entries, k)
			}
			c.mu.Unlock()
		}
		close(e.done)
	}()
	return e
}

// evict drops least recently used finished entries beyond cacheEntries.
// Entries in flight stay (the cache may briefly exceed its size).
func (c *cmdCache) evict() {
	for len(c.entries) > cacheEntries {
		var oldest cmdKey
		var found *cmdEntry
		for k, e := range c.entries {
			select {
			case <-e.done:
				if found == nil || e.used < found.used {
					oldest, found = k, e
				}
			default:
			}
		}
		if found == nil {
			return
		}
		delete(c.entries, oldest)
	}
}
