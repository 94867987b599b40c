package sendgen

import (
	"context"
	"fmt"
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
func (s *Stream) WriteTo(ctx context.Context, w io.Writer, progress func(int64)) (int64, error) {
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
		sink := &pipeSink{enc: s.enc, ctx: ctx, jobs: jobs, ordered: ordered}
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

	n, err := s.enc.writeOrdered(ctx, w, ordered, progress)
	if err != nil {
		cancel(err)
	}
	genErr := <-genDone
	workers.Wait()
	switch {
	case err != nil:
		return n, err
	case genErr != nil:
		return n, genErr
	}
	if known := s.knownSize(); known >= 0 && known != n {
		return n, fmt.Errorf("sendgen: stream of %s is %d bytes long, but counting found %d (the engine is not deterministic)", subvolName(s.child), n, known)
	}
	s.learnSize(n)
	return n, nil
}

// writeOrdered writes the stream header and then the chunks in order.
func (e encoder) writeOrdered(ctx context.Context, w io.Writer, ordered <-chan *chunk, progress func(int64)) (int64, error) {
	var hdr [streamHeaderLen]byte
	written, err := w.Write(appendStreamHeader(hdr[:0], e.proto))
	n := int64(written)
	for ch := range ordered {
		if err == nil && ch.data {
			err = <-ch.done
		}
		if err == nil {
			err = context.Cause(ctx)
		}
		if err == nil {
			written, err = w.Write(*ch.buf)
			n += int64(written)
			if err == nil && progress != nil {
				progress(n)
			}
		}
		if err != nil {
			return n, err
		}
		putChunk(ch)
	}
	return n, context.Cause(ctx)
}

// pipeSink is the producer side of WriteTo's pipeline, fed by the engine.
type pipeSink struct {
	enc     encoder
	ctx     context.Context
	meta    *[]byte // metadata batch being filled, nil when empty
	jobs    chan<- *chunk
	ordered chan<- *chunk
}

func (p *pipeSink) emit(c *Command) error {
	if c.Data == nil {
		if p.meta == nil {
			p.meta = getBuf()
		}
		*p.meta = p.enc.appendCommand(*p.meta, c, nil)
		if len(*p.meta) >= metaBatchSize {
			return p.flush()
		}
		return nil
	}
	if err := p.flush(); err != nil {
		return err
	}
	buf := getBuf()
	*buf = p.enc.appendPrefix(*buf, c)
	ch := getChunk(buf, true)
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
