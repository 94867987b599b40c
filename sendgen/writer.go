package sendgen

import (
	"context"
	"errors"
	"hash/maphash"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// WriteTo's pipeline: the engine encodes metadata commands and hands data
// commands (their prefix encoded after the metadata commands before them,
// data not yet read) to a pool of workers;
// the calling goroutine writes chunks in stream order, waiting for each data
// command's worker. The engine may run far ahead of the writer: where the
// stream is big files it costs little and where it is small files it is
// the slower side, so the time it banks over big files is spent over small
// ones. Its queue is bounded by queueLen chunks and by a share of
// queuedBytes: the encoded bytes queued, unread data not counted, plus
// chunkCost per chunk. queuedBytes bounds the queues of all passes of the
// process together (a mount serving many readers), each pass getting an
// equal share of at least minQueuedBytes; a pass alone (sendfs send) gets
// it all. The workers read at most readAhead data commands ahead of the
// writer (about 3 MiB in protocol 1), fewer when more passes run: all
// passes together read at most readAheadAll ahead, each pass at least
// minReadAhead.
const (
	queueLen       = 1 << 14
	queuedBytes    = 16 << 20
	minQueuedBytes = 1 << 20
	chunkCost      = 320 // what a queued chunk costs besides its bytes (struct, channel)
	readAhead      = 64
	readAheadAll   = 2 * readAhead
	minReadAhead   = 16
	metaBatchSize  = cmdBufSize / 2 // flush metadata to the writer at this size
)

// passesLive counts the WriteTo passes running in the process, which share
// queuedBytes and readAheadAll.
var passesLive atomic.Int64

// queueShare is a pass's share of queuedBytes now: all of it alone, else
// an equal share of half of it.
func queueShare() int64 {
	n := passesLive.Load()
	if n <= 1 {
		return queuedBytes
	}
	return max(queuedBytes/2/n, minQueuedBytes)
}

// aheadShare is a pass's share of readAheadAll now.
func aheadShare() int64 {
	return min(max(readAheadAll/max(passesLive.Load(), 1), minReadAhead), readAhead)
}

// chunk is one unit of the pipeline: a batch of whole metadata commands,
// possibly ending with one data command whose worker appends the data and
// seals it.
type chunk struct {
	off  int64   // stream offset of the chunk's first byte
	meta []byte  // the metadata commands, and the data command's prefix
	buf  *[]byte // data commands once filled: meta and the whole command
	ref  DataRef // data commands only
	data bool
	sum  uint64     // skeleton hash of the stream up to the chunk's end
	done chan error // data commands: the worker's result

	// prefixLen is the length of the data command's prefix, at the end
	// of meta.
	prefixLen int
}

var chunkPool = sync.Pool{New: func() any { return &chunk{done: make(chan error, 1)} }}

func getChunk(meta []byte, data bool) *chunk {
	ch := chunkPool.Get().(*chunk)
	ch.meta, ch.data = meta, data
	return ch
}

func putChunk(ch *chunk) {
	if ch.buf != nil {
		putBuf(ch.buf)
	}
	*ch = chunk{done: ch.done}
	chunkPool.Put(ch)
}

// bytes is the chunk's encoded bytes.
func (ch *chunk) bytes() []byte {
	if ch.data {
		return *ch.buf
	}
	return ch.meta
}

// fill reads the chunk's data after the prefix and seals the data command.
func (ch *chunk) fill(ctx context.Context, read func(*DataRef, []byte) error) error {
	if err := context.Cause(ctx); err != nil {
		return err
	}
	n := len(ch.meta) + int(ch.ref.Len)
	ch.buf = getBufFor(n)
	b := append(slices.Grow((*ch.buf)[:0], n), ch.meta...)
	start := len(ch.meta) - ch.prefixLen
	cmd, err := appendData(b[start:], &ch.ref, read)
	*ch.buf = b[:start+len(cmd)]
	return err
}

// budget bounds what one pass has queued for its writer (encoded bytes, or
// data commands read ahead) to limit(), which may change while the pass
// runs. One item bigger than the limit passes when nothing else is queued.
type budget struct {
	mu    sync.Mutex
	more  sync.Cond
	used  int64
	limit func() int64
}

func newBudget(ctx context.Context, limit func() int64) (*budget, func() bool) {
	b := &budget{limit: limit}
	b.more.L = &b.mu
	return b, context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.more.Broadcast()
		b.mu.Unlock()
	})
}

// take waits until n more fit, or ctx is done.
func (b *budget) take(ctx context.Context, n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used > 0 && b.used+n > b.limit() {
		if err := context.Cause(ctx); err != nil {
			return err
		}
		b.more.Wait()
	}
	b.used += n
	return nil
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.more.Broadcast()
	b.mu.Unlock()
}

// WriteTo writes the whole stream to w, reading file data on a pool of
// workers ahead of the writer. progress, if not nil, is called from the
// calling goroutine with the total bytes written so far. On error the bytes
// written so far are not a valid stream.
//
// When a pass fails in a way that a newer commit of a live filesystem
// explains (refresh.go), the stream is generated again on the newest
// commit, skipping what was written: only when the new pass reaches the
// same command boundary with the same commands (compared through a hash
// of everything but file data) does writing go on; otherwise WriteTo fails
// rather than join two different streams.
func (s *Stream) WriteTo(ctx context.Context, w io.Writer, progress func(int64)) (int64, error) {
	return s.writeStream(ctx, w, 0, progress)
}

// writeStream is WriteTo writing only the stream's bytes from start on;
// it returns where the stream ends.
func (s *Stream) writeStream(ctx context.Context, w io.Writer, start int64, progress func(int64)) (int64, error) {
	at := resumePoint{off: start}
	err := s.withRefresh(func() error {
		var err error
		at, err = s.writeFrom(ctx, w, at, progress)
		return err
	})
	n := at.off
	if err != nil {
		return n, err
	}
	return n, s.settleSize(n)
}

// resumePoint is how far a WriteTo pass wrote: the stream offset and, once
// it wrote a chunk, the hash of the commands before it (off is then a
// command boundary unless a write failed). A pass that starts at a
// resumePoint without a hash starts anywhere: it cuts the command that
// holds off.
type resumePoint struct {
	off    int64
	sum    uint64
	hashed bool // sum is set
}

// skeletonSeed seeds the hashes that compare passes within one process.
var skeletonSeed = maphash.MakeSeed()

// writeFrom runs one pass of WriteTo, writing only what lies after from
// (the whole stream when from.off is 0), and returns how far it wrote.
func (s *Stream) writeFrom(ctx context.Context, w io.Writer, from resumePoint, progress func(int64)) (resumePoint, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	jobs := make(chan *chunk, queueLen)
	ordered := make(chan *chunk, queueLen)
	passesLive.Add(1)
	defer passesLive.Add(-1)
	queued, stopWaking := newBudget(ctx, queueShare)
	defer stopWaking()
	ahead, stopWakingAhead := newBudget(ctx, aheadShare)
	defer stopWakingAhead()
	var workers sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		// A worker takes a slot of ahead (freed by the writer) before
		// the next job, so that the slots go to the chunks the writer
		// waits for first.
		workers.Go(func() {
			for {
				if ahead.take(ctx, 1) != nil {
					for ch := range jobs {
						ch.done <- context.Cause(ctx)
					}
					return
				}
				ch, ok := <-jobs
				if !ok {
					return
				}
				ch.done <- ch.fill(ctx, s.read)
			}
		})
	}
	genDone := make(chan error, 1)
	sink := &pipeSink{enc: s.enc, ctx: ctx, jobs: jobs, ordered: ordered, queued: queued, off: int64(streamHeaderLen), resume: from}
	go func() {
		sink.hash.SetSeed(skeletonSeed)
		err := s.runChecked(ctx, sink)
		if err == nil {
			err = sink.flush()
		}
		if err != nil {
			cancel(err)
		}
		close(jobs)
		close(ordered)
		genDone <- err
	}()

	at, err := s.enc.writeOrdered(ctx, w, ordered, func(ch *chunk) {
		queued.give(chunkCost + int64(len(ch.meta)))
		if ch.data {
			ahead.give(1)
		}
	}, from, progress)
	if err != nil {
		cancel(err)
	}
	genErr := <-genDone
	workers.Wait()
	switch {
	case err != nil && !errors.Is(err, genErr):
		return at, err
	case genErr != nil:
		return at, genErr
	}
	// A pass that started past the end wrote nothing: the stream ends
	// before its start.
	at.off = min(at.off, sink.off)
	return at, nil
}

// writeOrdered writes the stream header (unless from says it is written)
// and then the chunks in order, calling written after each.
func (e encoder) writeOrdered(ctx context.Context, w io.Writer, ordered <-chan *chunk, written func(*chunk), from resumePoint, progress func(int64)) (resumePoint, error) {
	at := from
	var err error
	if at.off < int64(streamHeaderLen) {
		var hdr [streamHeaderLen]byte
		var written int
		written, err = w.Write(appendStreamHeader(hdr[:0], e.proto)[at.off:])
		at.off += int64(written)
	}
	for ch := range ordered {
		if err == nil && ch.data {
			err = <-ch.done
		}
		if err == nil {
			err = context.Cause(ctx)
		}
		if err == nil {
			// Only the first chunk of a pass that starts inside a
			// command begins before at.
			var n int
			n, err = w.Write(ch.bytes()[at.off-ch.off:])
			at.off += int64(n)
			if err == nil {
				written(ch)
				at.sum, at.hashed = ch.sum, true
				if progress != nil {
					progress(at.off)
				}
			}
		}
		if err != nil {
			return at, err
		}
		putChunk(ch)
	}
	return at, context.Cause(ctx)
}

// pipeSink is the producer side of WriteTo's pipeline, fed by the engine.
type pipeSink struct {
	enc     encoder
	ctx     context.Context
	meta    []byte // metadata batch being filled
	metaOff int64  // its stream offset
	jobs    chan<- *chunk
	ordered chan<- *chunk
	queued  *budget
	off     int64        // stream offset after the commands emitted so far
	hash    maphash.Hash // of every command's skeleton so far
	resume  resumePoint  // what an earlier pass wrote: skipped
}

// errResumeMismatch: a pass on a newer commit did not generate what an
// earlier pass had written.
var errResumeMismatch = errors.New("sendgen: the stream generated again after the filesystem moved on differs from what was already written; the snapshot changed")

// skipping handles a command of a pass that starts after the stream's
// start: it reports whether c lies before the start (and is to be
// dropped). A pass that resumes an earlier one must reach the earlier
// one's end at a command boundary, with the same skeleton hash; a pass
// that starts anywhere passes on the command that holds its start, which
// the writer cuts.
func (p *pipeSink) skipping(c *Command) (bool, error) {
	if p.off >= p.resume.off {
		return false, nil
	}
	n := p.enc.commandLen(c)
	if !p.resume.hashed && p.off+n > p.resume.off {
		return false, nil
	}
	buf := getBuf()
	defer putBuf(buf)
	p.hash.Write(p.skeleton((*buf)[:0], c))
	p.off += n
	if p.resume.hashed && (p.off > p.resume.off || p.off == p.resume.off && p.hash.Sum64() != p.resume.sum) {
		return true, errResumeMismatch
	}
	return true, nil
}

// skeleton is what the hash of a pass covers: a command without data
// whole, a data command up to its data.
func (p *pipeSink) skeleton(dst []byte, c *Command) []byte {
	if c.Data == nil {
		return p.enc.appendCommand(dst, c, nil)
	}
	return p.enc.appendPrefix(dst, c)
}

func (p *pipeSink) emit(c *Command) error {
	if skip, err := p.skipping(c); skip || err != nil {
		return err
	}
	if len(p.meta) == 0 {
		p.metaOff = p.off
	}
	p.off += p.enc.commandLen(c)
	before := len(p.meta)
	p.meta = p.skeleton(p.meta, c)
	p.hash.Write(p.meta[before:])
	if c.Data == nil {
		if len(p.meta) >= metaBatchSize {
			return p.flush()
		}
		return nil
	}
	// The metadata batch goes with the data command, in one chunk.
	if err := p.queued.take(p.ctx, chunkCost+int64(len(p.meta))); err != nil {
		return err
	}
	ch := getChunk(slices.Clone(p.meta), true)
	ch.off = p.metaOff
	ch.sum = p.hash.Sum64()
	ch.ref = *c.Data
	ch.prefixLen = len(p.meta) - before
	p.meta = p.meta[:0]
	// Workers first: they never wait for the writer, so the writer can
	// always wait for a chunk it has received.
	if err := p.send(p.jobs, ch); err != nil {
		return err
	}
	return p.send(p.ordered, ch)
}

// flush hands the metadata batch to the writer: a copy of its size, so that
// a queue of small batches holds no more than their bytes.
func (p *pipeSink) flush() error {
	if len(p.meta) == 0 {
		return nil
	}
	if err := p.queued.take(p.ctx, chunkCost+int64(len(p.meta))); err != nil {
		return err
	}
	ch := getChunk(slices.Clone(p.meta), false)
	ch.off = p.metaOff
	ch.sum = p.hash.Sum64()
	p.meta = p.meta[:0]
	return p.send(p.ordered, ch)
}

func (p *pipeSink) send(q chan<- *chunk, ch *chunk) error {
	select {
	case q <- ch:
		return nil
	case <-p.ctx.Done():
		return context.Cause(p.ctx)
	}
}
