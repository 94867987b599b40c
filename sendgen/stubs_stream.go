package sendgen

// STUBS owned by the stream helper (encoder, counting, materialization,
// parallel writer, random-access reader). Replaced by stream*.go / encode.go.

import "context"

// Reader serves any byte range of a stream; safe for concurrent use.
type Reader struct{}

// NewReader prepares random access to the stream (building its command index
// on first use, shared by all readers of s).
func (s *Stream) NewReader(ctx context.Context) (*Reader, error) { panic("unimplemented") }

// ReadAt reads len(p) bytes at off, like io.ReaderAt.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) { panic("unimplemented") }
