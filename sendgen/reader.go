package sendgen

import (
	"context"
	"errors"
	"io"
	"sync"
)

// Random access: a Reader copies metadata straight from the plan and
// regenerates data commands on demand, into the caller's buffer when they
// fit in it. The plan is built alongside (plan_build.go) and a read waits
// only until it covers the read's bytes. A sequential reader is served from
// a window of the stream filled ahead of it on worker goroutines
// (reader_window.go); other reads fill the caller's buffer directly, helped
// by goroutines from free slots (reader_fill.go).

// Reader serves any byte range of a stream; safe for concurrent use.
type Reader struct {
	s   *Stream
	ctx context.Context
	mu  sync.Mutex
	b   *planBuild // attached; nil after Close or a failed build
	win window
}

// NewReader prepares random access to the stream; the passes it starts run
// under ctx. Nothing is generated before the first read: a sequential
// pass needs no index, and the first read that needs one (a jump) starts
// building it, shared by all readers of s.
func (s *Stream) NewReader(ctx context.Context) (*Reader, error) {
	return &Reader{s: s, ctx: ctx, win: window{next: -1}}, nil
}

// cover returns the plan as far as it covers the stream up to end, or the
// whole plan when the stream ends before. After a failed build the next
// call starts another.
func (r *Reader) cover(end int64) (*plan, error) {
	r.mu.Lock()
	if r.b == nil {
		r.b = r.s.attachBuild(r.ctx)
	}
	b := r.b
	r.mu.Unlock()
	p, err := b.covering(end)
	if err != nil {
		r.detach(b)
	}
	return p, err
}

// detach lets go of build b if it is still the one attached.
func (r *Reader) detach(b *planBuild) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.b == b {
		r.b = nil
		r.s.detachBuild(b)
	}
}

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
	if n := r.s.knownSize(); n >= 0 {
		if off >= n {
			return View{}, io.EOF
		}
		buf = buf[:min(int64(len(buf)), n-off)]
	}
	// A feed stopped under the read (another read moved the window) is
	// asked once more, the second time in the window that read opened.
	for range 2 {
		if len(buf) == 0 {
			break
		}
		blocks := r.acquire(off, off+int64(len(buf)))
		if blocks == nil {
			break
		}
		v, err := r.fromBlocks(buf, off, blocks)
		switch {
		case errors.Is(err, errPastEnd):
			return View{}, io.EOF
		case !errors.Is(err, errFeedStopped):
			return v, err
		}
	}
	return r.direct(buf, off)
}

// direct reads into buf from the plan, once it covers the read.
func (r *Reader) direct(buf []byte, off int64) (View, error) {
	pl, err := r.cover(max(off+int64(len(buf)), off+1))
	if err != nil {
		return View{}, err
	}
	if off >= pl.size {
		return View{}, io.EOF
	}
	p := buf[:min(int64(len(buf)), pl.size-off)]
	if err := pl.fill(p, off, true); err != nil {
		return View{}, err
	}
	return View{Data: p}, nil
}

// Close lets go of the read-ahead window, whose blocks not started yet are
// never filled while the others go back to the pool once no view holds
// them, and of the index build, which stops if no other Reader needs it.
// The Reader stays usable: a later read starts again.
func (r *Reader) Close() error {
	w := &r.win
	w.mu.Lock()
	w.reset()
	w.next = -1
	w.mu.Unlock()
	r.mu.Lock()
	b := r.b
	r.mu.Unlock()
	if b != nil {
		r.detach(b)
	}
	return nil
}
