package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"sendfs/sendgen"
)

// Read answers from the stream at off; a short result only at the end.
func (f *streamFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := fh.(*streamHandle)
	if !ok {
		return nil, syscall.EBADF
	}
	size := h.size
	if size != f.size.Load() {
		f.logFailure("stream read failed", errSizeChanged, "offset", off, "length", len(dest))
		return nil, syscall.EIO
	}
	if off >= size || off < 0 {
		return fuse.ReadResultData(nil), 0
	}
	p := dest[:min(int64(len(dest)), size-off)]
	res, err := h.read(p, off, size)
	if err != nil {
		f.logFailure("stream read failed", err, "offset", off, "length", len(p))
		return nil, syscall.EIO
	}
	return res, 0
}

// viewReader is a reader that can lend its bytes instead of copying them
// (*sendgen.Reader): the reply then goes straight from them to the kernel.
type viewReader interface {
	ReadView(buf []byte, off int64) (sendgen.View, error)
}

// read returns len(p) bytes from off, read into p or lent, all of them or
// an error: the size is exact, so a short read is a failure too, and so is
// a stream whose length is not size (sizeMismatch). The read that ends the
// file waits for the stream's length to be known.
func (h *streamHandle) read(p []byte, off, size int64) (fuse.ReadResult, error) {
	if res, done, err := h.readPrefix(p, off, size); done {
		return res, err
	}
	r, err := h.reader()
	if err != nil {
		return nil, err
	}
	if off+int64(len(p)) == size {
		if err := h.checkLength(r, size); err != nil {
			return nil, err
		}
	}
	if vr, ok := r.(viewReader); ok {
		v, err := vr.ReadView(p, off)
		if err == nil && len(v.Data) != len(p) {
			v.Release()
			err = io.EOF
		}
		if errors.Is(err, io.EOF) {
			err = h.short(r, size)
		}
		if err != nil {
			return nil, err
		}
		return viewResult{v}, nil
	}
	n, err := r.ReadAt(p, off)
	switch {
	case n == len(p):
		return fuse.ReadResultData(p), nil
	case err == nil || errors.Is(err, io.EOF):
		return nil, h.short(r, size)
	}
	return nil, err
}

// sizedReader is a reader that can tell the stream's length
// (*sendgen.Reader).
type sizedReader interface {
	Size() (int64, error)
}

// checkLength fails unless the stream is size bytes long, when r can
// tell.
func (h *streamHandle) checkLength(r io.ReaderAt, size int64) error {
	sr, ok := r.(sizedReader)
	if !ok {
		return nil
	}
	n, err := sr.Size()
	switch {
	case err != nil:
		return err
	case n != size:
		return h.f.sizeMismatch(n, size)
	}
	return nil
}

// short is the error for a read that found the stream ending before size.
func (h *streamHandle) short(r io.ReaderAt, size int64) error {
	if err := h.checkLength(r, size); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// prefixReader is a stream that can serve its first bytes without building
// its command index (*sendgen.Stream).
type prefixReader interface {
	ReadPrefixAt(ctx context.Context, p []byte, off int64) (int, error)
}

// readPrefix serves a read within the first sendgen.PrefixLimit bytes by
// generating the stream's start, as long as this open has not built the
// index: a file manager reads the start of every stream in a directory to
// guess its type, and that must cost the same for a small stream and a huge
// one. done is false when the read is not for it.
//
// A read that ends the file asks for one byte more: a stream that goes on
// past st_size must fail, not end early as if complete.
func (h *streamHandle) readPrefix(p []byte, off, size int64) (res fuse.ReadResult, done bool, err error) {
	pr, ok := h.s.(prefixReader)
	end := off + int64(len(p))
	if end == size {
		end++ // past PrefixLimit, the index (which knows the size) serves it
	}
	if !ok || h.indexed.Load() || end > sendgen.PrefixLimit {
		return nil, false, nil
	}
	buf := p
	if end > off+int64(len(p)) {
		buf = make([]byte, len(p)+1)
	}
	n, err := pr.ReadPrefixAt(h.f.r.ctx, buf, off)
	switch {
	case n == len(p) && len(buf) == len(p):
		return fuse.ReadResultData(p), true, nil
	case n == len(p) && (err == nil || errors.Is(err, io.EOF)):
		copy(p, buf)
		return fuse.ReadResultData(p), true, nil
	case err == nil || errors.Is(err, io.EOF):
		// Shorter or longer than st_size: count it to say by how much.
		actual, cerr := h.s.Size(h.f.r.ctx)
		if cerr != nil {
			return nil, true, cerr
		}
		return nil, true, h.f.sizeMismatch(actual, size)
	}
	return nil, true, err
}

// errSizeChanged fails the reads of an open made before the stream's size
// was found wrong: what it read so far may end at the wrong place.
var errSizeChanged = errors.New("the stream's size changed since this file was opened; open it again")

// sizeMismatch handles a stream whose bytes disagree with the st_size it was
// given (a size cached under a key that did not cover everything that shapes
// the bytes): the read fails, the cached size is replaced by the true one,
// and st_size becomes true for the next stat and lookup.
func (f *streamFile) sizeMismatch(actual, size int64) error {
	f.r.sizes.replace(f.key, actual)
	if f.size.CompareAndSwap(size, actual) {
		// The kernel caches attributes (an hour without --refresh):
		// have it ask again. Not from within this READ, whose page the
		// invalidation would wait for.
		go f.NotifyContent(0, 0)
	}
	return fmt.Errorf("the stream is %d bytes long, not the %d bytes its size said (a stale cached size, now replaced)", actual, size)
}

// viewResult replies with the bytes of a view and releases it once they
// are written to the kernel. Having Slices makes go-fuse write them with
// writev and only then call Done; a plain ReadResult would be flattened
// and released before the write.
type viewResult struct{ v sendgen.View }

func (r viewResult) Bytes([]byte) ([]byte, fuse.Status) { return r.v.Data, fuse.OK }
func (r viewResult) Slices() ([][]byte, fuse.Status)    { return [][]byte{r.v.Data}, fuse.OK }
func (r viewResult) Size() int                          { return len(r.v.Data) }
func (r viewResult) Done()                              { r.v.Release() }
