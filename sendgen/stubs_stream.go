package sendgen

// STUBS owned by the stream helper (encoder, counting, materialization,
// parallel writer, random-access reader). Replaced by stream*.go / encode.go.

import (
	"context"
	"io"

	"sendfs/btrfsread"
)

// Options select what the stream contains. The zero value is the kernel's
// default: protocol 1.
type Options struct {
	// Protocol is the stream version (only 1 for now; 0 means 1).
	Protocol int
	// AllowWritable accepts a writable child or parent (for images that are
	// not mounted anywhere).
	AllowWritable bool
}

// Stream is one send stream: child, incremental from parent when parent is
// not nil. It is safe for concurrent use.
type Stream struct {
	child, parent *btrfsread.Subvolume
	opts          Options
}

// NewStream checks the pair and describes its stream; it generates nothing.
func NewStream(child, parent *btrfsread.Subvolume, opts Options) (*Stream, error) {
	panic("unimplemented")
}

// Size returns the exact length of the stream in bytes, computed without
// reading file data (and remembered).
func (s *Stream) Size(ctx context.Context) (int64, error) { panic("unimplemented") }

// WriteTo writes the whole stream to w, reading file data on a pool of
// workers ahead of the writer. progress, if not nil, is called with the
// total bytes written so far.
func (s *Stream) WriteTo(ctx context.Context, w io.Writer, progress func(int64)) (int64, error) {
	panic("unimplemented")
}

// CacheKey identifies the stream's bytes: the same key always means the same
// bytes (uuids, generations, options).
func (s *Stream) CacheKey() string { panic("unimplemented") }

// Reader serves any byte range of a stream; safe for concurrent use.
type Reader struct{}

// NewReader prepares random access to the stream (building its command index
// on first use, shared by all readers of s).
func (s *Stream) NewReader(ctx context.Context) (*Reader, error) { panic("unimplemented") }

// ReadAt reads len(p) bytes at off, like io.ReaderAt.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) { panic("unimplemented") }
