package sendgen

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"runtime"
	"sync"
)

// WriteTo's pipeline: the engine encodes metadata commands in place and
// hands data commands (their prefix encoded, data not yet read) to a pool of
// workers; the calling goroutine writes chunks in stream order, waiting for
// each data command's worker. Both queues are bounded, so at most about
// 2*pipelineDepth chunks are in flight: about 4 MiB in protocol 1, where a
// chunk holds at most about cmdBufSize bytes.
const (
	pipelineDepth = 32
	metaBatchSize = cmdBufSize / 2 // flush metadata to the writer at this size
)

// chunk is one unit of the pipeline: a batch of whole metadata commands, or
// one data command whose worker appends the data and seals it.
type chunk struct {
	buf  *[]byte
	ref  DataRef // data commands only
	data bool
	sum  uint64     // skeleton hash of the stream up to the chunk's end
	done chan error // data commands: the worker's result
}

var chunkPool = sync.Pool{New: func() any { return &chunk{done: make(chan error, 1)} }}

func getChunk(buf *[]byte, data bool) *chunk {
	ch := chunkPool.Get().(*chunk)
	ch.buf, ch.data = buf, data
	return ch
}

func putChunk(ch *chunk) {
	putBuf(ch.buf)
	*ch = chunk{done: ch.done}
	chunkPool.Put(ch)
}

// fill reads the chunk's data into its buffer after the prefix and seals it.
func (ch *chunk) fill(ctx context.Context, read func(*DataRef, []byte) error) error {
	if err := context.Cause(ctx); err != nil {
		return err
	}
	b, err := appendData(*ch.buf, &ch.ref, read)
	*ch.buf = b
	return err
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
	var at resumePoint
	err := s.withRefresh(func() error {
		var err error
		at, err = s.writeFrom(ctx, w, at, progress)
		return err
	})
	n := at.off
	if err != nil {
		return n, err
	}
	if known := s.knownSize(); known >= 0 && known != n {
		return n, fmt.Errorf("sendgen: stream of %s is %d bytes long, but counting found %d (the engine is not deterministic)", s.child, n, known)
	}
	s.learnSize(n)
	return n, nil
}

// resumePoint is how far a WriteTo pass wrote: the stream offset (at a
// command boundary unless a write failed) and the hash of the commands
// before it.
type resumePoint struct {
	off int64
	sum uint64
}

// skeletonSeed seeds the hashes that compare passes within one process.
var skeletonSeed = maphash.MakeSeed()

// writeFrom runs one pass of WriteTo, writing only what lies after from
// (nothing written yet when from.off is 0), and returns how far it wrote.
func (s *Stream) writeFrom(ctx context.Context, w io.Writer, from resumePoint, progress func(int64)) (resumePoint, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	jobs := make(chan *chunk, pipelineDepth)
	ordered := make(chan *chunk, pipelineDepth)
	var workers sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		workers.Go(func() {
			for ch := range jobs {
				ch.done <- ch.fill(ctx, s.read)
			}
		})
	}
	genDone := make(chan error, 1)
	go func() {
		sink := &pipeSink{enc: s.enc, ctx: ctx, jobs: jobs, ordered: ordered, off: int64(streamHeaderLen), resume: from}
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

	at, err := s.enc.writeOrdered(ctx, w, ordered, from, progress)
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
	return at, nil
}

// writeOrdered writes the stream header (unless from says it is written)
// and then the chunks in order.
func (e encoder) writeOrdered(ctx context.Context, w io.Writer, ordered <-chan *chunk, from resumePoint, progress func(int64)) (resumePoint, error) {
	at := resumePoint{off: from.off, sum: from.sum}
	var err error
	if at.off == 0 {
		var hdr [streamHeaderLen]byte
		var written int
		written, err = w.Write(appendStreamHeader(hdr[:0], e.proto))
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
			var written int
			written, err = w.Write(*ch.buf)
			at.off += int64(written)
			if err == nil {
				at.sum = ch.sum
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
	meta    *[]byte // metadata batch being filled, nil when empty
	jobs    chan<- *chunk
	ordered chan<- *chunk
	off     int64        // stream offset after the commands emitted so far
	hash    maphash.Hash // of every command's skeleton so far
	resume  resumePoint  // what an earlier pass wrote: skipped
}

// errResumeMismatch: a pass on a newer commit did not generate what an
// earlier pass had written.
var errResumeMismatch = errors.New("sendgen: the stream generated again after the filesystem moved on differs from what was already written; the snapshot changed")

// skipping handles a command of a pass that resumes an earlier one: it
// reports whether c lies in what was written already (and is to be
// dropped). The pass must reach the earlier one's end at a command
// boundary, with the same skeleton hash.
func (p *pipeSink) skipping(c *Command) (bool, error) {
	if p.off >= p.resume.off {
		return false, nil
	}
	buf := getBuf()
	defer putBuf(buf)
	p.hash.Write(p.skeleton((*buf)[:0], c))
	p.off += p.enc.commandLen(c)
	if p.off > p.resume.off || p.off == p.resume.off && p.hash.Sum64() != p.resume.sum {
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
	p.off += p.enc.commandLen(c)
	if c.Data == nil {
		if p.meta == nil {
			p.meta = getBuf()
		}
		before := len(*p.meta)
		*p.meta = p.skeleton(*p.meta, c)
		p.hash.Write((*p.meta)[before:])
		if len(*p.meta) >= metaBatchSize {
			return p.flush()
		}
		return nil
	}
	if err := p.flush(); err != nil {
		return err
	}
	buf := getBuf()
	*buf = p.skeleton(*buf, c)
	p.hash.Write(*buf)
	ch := getChunk(buf, true)
	ch.sum = p.hash.Sum64()
	ch.ref = *c.Data
	// Workers first: they never wait for the writer, so the writer can
	// always wait for a chunk it has received.
	if err := p.send(p.jobs, ch); err != nil {
		return err
	}
	return p.send(p.ordered, ch)
}

// flush hands the metadata batch to the writer.
func (p *pipeSink) flush() error {
	if p.meta == nil {
		return nil
	}
	ch := getChunk(p.meta, false)
	ch.sum = p.hash.Sum64()
	p.meta = nil
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
