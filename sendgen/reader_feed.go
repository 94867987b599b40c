package sendgen

import (
	"context"
	"errors"
	"sync"
)

// A feed serves a sequential reader with what serves `sendfs send`: the
// engine and WriteTo's pipeline (data read on workers ahead of the sealing
// writer, refresh and resume included), started at a block's start and
// writing into the window's blocks in order. It needs no plan, so a
// sequential reader never waits for one, whatever its offset: the engine
// only skips what lies before (no data is read for it). Its memory is the
// pipeline's and the window's blocks; the window's reader paces it, as a
// pipe paces `sendfs send`.

// errFeedStopped: the window moved before its feed filled the block.
var errFeedStopped = errors.New("sendgen: sequential read-ahead stopped")

// feed writes the stream into queued blocks, one after the other.
type feed struct {
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	more   *sync.Cond // queue grew or stopped changed
	queue  []*block   // blocks to fill next, each with a reference
	cur    *block     // being filled, with a reference
	// stopped: the window let go of the feed; it fills nothing more.
	stopped bool
}

// startFeed starts a feed from block k.
func (r *Reader) startFeed(k int64) *feed {
	ctx, cancel := context.WithCancelCause(r.ctx)
	f := &feed{cancel: cancel}
	f.more = sync.NewCond(&f.mu)
	go f.run(ctx, r.s, k*blockSize)
	return f
}

// add queues block b, which the feed fills after those queued before.
func (f *feed) add(b *block) {
	b.refs.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		b.complete(errFeedStopped)
		b.release()
		return
	}
	f.queue = append(f.queue, b)
	f.more.Signal()
}

// stop ends the feed: the blocks it has not filled get errFeedStopped.
func (f *feed) stop() {
	f.cancel(errFeedStopped)
	f.mu.Lock()
	f.stopped = true
	f.more.Signal()
	f.mu.Unlock()
}

// run writes the stream from start on into the blocks. When the stream
// ends, the block being filled is complete and those after it are empty;
// when the pass fails, the block being filled gets the error and those
// after it errFeedStopped (a read there starts afresh).
func (f *feed) run(ctx context.Context, s *Stream, start int64) {
	stopWaiting := context.AfterFunc(ctx, f.stop)
	defer stopWaiting()
	_, err := s.writeStream(ctx, f, start, nil)
	if ctx.Err() != nil {
		err = errFeedStopped
	}
	f.mu.Lock()
	f.stopped = true
	queue := f.queue
	f.queue = nil
	f.mu.Unlock()
	if f.cur != nil {
		f.cur.complete(err)
		f.cur.release()
	}
	if err != nil {
		err = errFeedStopped // reads there start afresh
	}
	for _, b := range queue {
		b.complete(err) // without an error: past the end, empty
		b.release()
	}
}

// Write copies p into the blocks, completing each once full.
func (f *feed) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if f.cur == nil {
			b, err := f.next()
			if err != nil {
				return n, err
			}
			b.buf = blockPool.Get().(*[]byte)
			b.data = (*b.buf)[:0]
			f.cur = b
		}
		b := f.cur
		m := copy((*b.buf)[len(b.data):blockSize], p[n:])
		b.data = (*b.buf)[:len(b.data)+m]
		n += m
		if len(b.data) == blockSize {
			f.cur = nil
			b.complete(nil)
			b.release()
		}
	}
	return n, nil
}

// next waits for the next queued block.
func (f *feed) next() (*block, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.queue) == 0 && !f.stopped {
		f.more.Wait()
	}
	if f.stopped {
		return nil, errFeedStopped
	}
	b := f.queue[0]
	f.queue[0] = nil
	f.queue = f.queue[1:]
	return b, nil
}
