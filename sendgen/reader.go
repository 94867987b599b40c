package sendgen

import (
	"context"
	"errors"
	"io"
)

// Random access: a Reader copies metadata straight from the plan and
// regenerates data commands on demand, into the caller's buffer when they
// fit in it. A sequential reader is served from a window of the stream
// filled ahead of it on worker goroutines (reader_window.go); other reads
// fill the caller's buffer directly, helped by goroutines from free slots
// (reader_fill.go).

// Reader serves any byte range of a stream; safe for concurrent use.
type Reader struct {
	plan *plan
	win  window
}

// NewReader prepares random access to the stream (building its command index
// on first use, shared by all readers of s).
func (s *Stream) NewReader(ctx context.Context) (*Reader, error) {
	p, err := s.getPlan(ctx)
	if err != nil {
		return nil, err
	}
	return &Reader{plan: p, win: window{next: -1}}, nil
}

// Size is the stream's length.
func (r *Reader) Size() int64 { return r.plan.size }

// ReadAt reads len(p) bytes at off, like io.ReaderAt.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	v, err := r.ReadView(p, off)
	if err != nil {
		return 0, err
	}
	defer v.Release()
	if v.block != nil {
		copy(p, v.Data)
	}
	if len(v.Data) < len(p) {
		return len(v.Data), io.EOF
	}
	return len(v.Data), nil
}

// View is a range of the stream that a Reader lends: Data is valid until
// Release, which must be called once.
type View struct {
	Data  []byte
	block *block // lent from, nil when Data is the caller's buffer
}

// Release gives the bytes back to the Reader.
func (v View) Release() {
	if v.block != nil {
		v.block.release()
	}
}

// ReadView returns the len(buf) bytes at off (fewer at the end of the
// stream, io.EOF past it): lent without a copy when a sequential pass holds
// them in one piece, else read into buf. FUSE replies with the view and
// releases it once the kernel has the bytes.
func (r *Reader) ReadView(buf []byte, off int64) (View, error) {
	if off < 0 {
		return View{}, errors.New("sendgen: negative read offset")
	}
	if off >= r.plan.size {
		return View{}, io.EOF
	}
	p := buf[:min(int64(len(buf)), r.plan.size-off)]
	if len(p) == 0 {
		return View{Data: p}, nil
	}
	end := off + int64(len(p))
	blocks := r.acquire(off, end)
	if len(blocks) != 1 {
		if err := r.read(p, off, blocks); err != nil {
			return View{}, err
		}
		return View{Data: p}, nil
	}
	b := blocks[0]
	if err := r.await(b); err != nil {
		b.release()
		return View{}, err
	}
	start := b.k * blockSize
	return View{Data: b.data[off-start : end-start : end-start], block: b}, nil
}

// read fills p from off: from the window's blocks when acquire returned
// some, else directly.
func (r *Reader) read(p []byte, off int64, blocks []*block) error {
	if blocks != nil {
		return r.copyBlocks(p, off, blocks)
	}
	return r.plan.fill(p, off, true)
}

// Close lets go of the read-ahead window: blocks not started yet are never
// filled, and the others go back to the pool once no view holds them. The
// Reader stays usable; a later sequential pass opens a new window.
func (r *Reader) Close() error {
	w := &r.win
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drop(len(w.blocks))
	w.ahead, w.next = 0, -1
	return nil
}
