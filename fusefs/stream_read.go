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
// a stream whose length is not size (sizeMismatch).
//
// A read that ends the file asks for one byte more: a stream that goes on
// past st_size must fail, not end early as if complete.
func (h *streamHandle) read(p []byte, off, size int64) (fuse.ReadResult, error) {
	buf := p
	if off+int64(len(p)) == size {
		buf = make([]byte, len(p)+1)
	}
	v, err := h.view(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(v.Data) != len(p) {
		v.Release()
		// Shorter or longer than st_size: count it to say by how much.
		actual, err := h.s.Size(h.f.r.ctx)
		switch {
		case err != nil:
			return nil, err
		case actual != size:
			return nil, h.f.sizeMismatch(actual, size)
		}
		return nil, io.ErrUnexpectedEOF
	}
	if len(buf) != len(p) {
		copy(p, v.Data)
		v.Release()
		return fuse.ReadResultData(p), nil
	}
	return viewResult{v}, nil
}

// view reads up to len(buf) bytes at off: the first bytes of the stream
// through ReadPrefixAt, the others through the handle's reader, lent when
// it can.
func (h *streamHandle) view(buf []byte, off int64) (sendgen.View, error) {
	if pr, ok := h.s.(prefixReader); ok && !h.hasReader.Load() && off+int64(len(buf)) <= sendgen.PrefixLimit {
		n, err := pr.ReadPrefixAt(h.f.r.ctx, buf, off)
		return sendgen.View{Data: buf[:n]}, err
	}
	r, err := h.reader()
	if err != nil {
		return sendgen.View{}, err
	}
	if vr, ok := r.(viewReader); ok {
		return vr.ReadView(buf, off)
	}
	n, err := r.ReadAt(buf, off)
	return sendgen.View{Data: buf[:n]}, err
}

// prefixReader is a stream that can serve its first bytes without a read
// pass of its own (*sendgen.Stream): a file manager reads the start of
// every stream in a directory to guess its type, and that must cost the
// same for a small stream and a huge one. Once an open has its reader,
// that serves every read.
type prefixReader interface {
	ReadPrefixAt(ctx context.Context, p []byte, off int64) (int, error)
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
