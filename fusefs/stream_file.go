package fusefs

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"sendfs/btrfsread"
)

// streamFile is one send stream: full.stream or from/<parent>.stream. Its
// size is known when the node is made (Lookup computes it), so every stat
// reports the exact length before a byte is generated.
type streamFile struct {
	fs.Inode
	statfsNode
	r     *Root
	ino   uint64
	label string // path in the mount, for log lines
	pair  pair
	key   string // the stream's cache key, under which size was found
	// size is st_size. It only changes when reading finds that the bytes
	// disagree with it (a stale cached size, sizeMismatch).
	size atomic.Int64

	mu sync.Mutex
	// active serves the open handles, which share its command index
	// (built only if a reader jumps); it is dropped with the last close, so
	// that the kernel keeping the node cached does not keep a
	// metadata-sized index in memory.
	active    pairStream
	opens     int
	lastError string // the cause last logged, so a failing range logs once
}

// streamBlockSize is st_blksize: cat and friends read this much per call,
// matching the 1 MiB FUSE requests.
const streamBlockSize = 1 << 20

// newStreamFile describes child's stream (incremental from parent unless
// nil) and computes its size.
func (r *Root) newStreamFile(ctx context.Context, child, parent *snapshot) (node, syscall.Errno) {
	p := pair{child: child, parent: parent}
	f := &streamFile{r: r, ino: p.ino(), label: p.label(), pair: p}
	s, err := r.openPair(p)
	if err == nil {
		f.key = s.CacheKey()
		var n int64
		n, err = r.sizes.size(ctx, s, true)
		f.size.Store(n)
	}
	switch {
	case err == nil:
		return f, 0
	case ctx.Err() != nil:
		return nil, syscall.EINTR
	case errors.Is(err, errGone) || errors.Is(err, btrfsread.ErrDeleted):
		return nil, syscall.ENOENT
	}
	r.logSizeFailure(f.label, err)
	return nil, syscall.EIO
}

// logSizeFailure logs that the size of the stream at label failed, once
// per stream and cause: every later stat of it fails the same way.
func (r *Root) logSizeFailure(label string, err error) {
	if prev, seen := r.sizeFailures.Swap(label, err.Error()); !seen || prev != err.Error() {
		r.log.Error("stream size failed", "stream", label, "err", err)
	}
}

// stable gives the stream's node a generation from its cache key: a stream
// whose bytes change (a renamed snapshot) is a new kernel inode under the
// same inode number, so no page cached for the old bytes is served.
func (f *streamFile) stable() fs.StableAttr {
	h := fnv.New64a()
	h.Write([]byte(f.key))
	return fs.StableAttr{Mode: fuse.S_IFREG, Ino: f.ino, Gen: h.Sum64()}
}

func (f *streamFile) fillAttr(out *fuse.Attr) {
	out.Ino = f.ino
	out.Mode = fuse.S_IFREG | 0o400
	out.Nlink = 1
	out.Size = uint64(f.size.Load())
	// go-fuse leaves Blocks at 0 once Blksize is set, and cp then takes
	// the file for sparse.
	out.Blksize = streamBlockSize
	out.Blocks = (out.Size + 511) / 512
	f.r.fillCommon(out, creationTime(f.pair.child.sv))
}

func (f *streamFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.fillAttr(&out.Attr)
	return 0
}

// Setattr refuses every change (truncate, chmod, utimes).
func (f *streamFile) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// streamHandle is one open of a stream file, with its own reader (and so
// its own read-ahead). The reader is made by the first READ past the
// stream's first MiB that reaches us, and generates nothing before: a
// reopened file whose first pages are still cached (a file manager sniffing
// types again) costs nothing.
type streamHandle struct {
	f *streamFile
	s pairStream
	// size is st_size as of the open: the reader decides how much to read
	// from it, so once the stream turns out to have another length every
	// further read of this open fails.
	size int64
	once sync.Once
	r    io.ReaderAt
	err  error
	// hasReader is set once the reader is asked for: from then on every
	// read goes through it.
	hasReader atomic.Bool
}

func (h *streamHandle) reader() (io.ReaderAt, error) {
	h.hasReader.Store(true)
	// The reader's passes outlive requests (its read-ahead, the index
	// every open of the stream shares), so they run under the mount's
	// context, not a request's.
	h.once.Do(func() { h.r, h.err = h.s.NewReader(h.f.r.ctx) })
	return h.r, h.err
}

// writeFlags are the open flags that would modify the file.
const writeFlags = syscall.O_WRONLY | syscall.O_RDWR | syscall.O_TRUNC | syscall.O_APPEND | syscall.O_CREAT

// Open refuses writes and attaches the handle to the stream. The bytes are
// deterministic, so the page cache may outlive the open (KEEP_CACHE).
func (f *streamFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&writeFlags != 0 {
		return nil, 0, syscall.EROFS
	}
	s, err := f.acquire()
	if errors.Is(err, errGone) {
		return nil, 0, syscall.ENOENT
	}
	if err != nil {
		f.logFailure("stream open failed", err)
		return nil, 0, syscall.EIO
	}
	return &streamHandle{f: f, s: s, size: f.size.Load()}, fuse.FOPEN_KEEP_CACHE, 0
}

// acquire returns the stream the open handles share, describing it for
// the first one.
func (f *streamFile) acquire() (pairStream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.active == nil {
		s, err := f.r.openPair(f.pair)
		if err != nil {
			return nil, err
		}
		f.active = s
	}
	f.opens++
	return f.active, nil
}

// release undoes acquire; the last one lets the stream go.
func (f *streamFile) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.opens--; f.opens == 0 {
		f.active = nil
	}
}

// Release also stops the reader's read-ahead, so that a handle closed
// early leaves no work behind.
func (h *streamHandle) Release(ctx context.Context) syscall.Errno {
	h.once.Do(func() {}) // waits for a reader being built; none is built after
	if c, ok := h.r.(io.Closer); ok {
		c.Close()
	}
	h.f.release()
	return 0
}

// logFailure logs one line for a cause, not one per request: readahead
// retries the same failing range several times.
func (f *streamFile) logFailure(msg string, err error, args ...any) {
	f.mu.Lock()
	repeated := f.lastError == err.Error()
	f.lastError = err.Error()
	f.mu.Unlock()
	if !repeated {
		f.r.log.Error(msg, append([]any{"stream", f.label, "err", err}, args...)...)
	}
}
