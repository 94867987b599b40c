package sendgen

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"sendfs/btrfsread"
)

// readData fills p (exactly ref.Len bytes) with the file data ref names.
func readData(ref *DataRef, p []byte) error {
	if len(p) != int(ref.Len) {
		return fmt.Errorf("sendgen: %d-byte buffer for %d bytes of data", len(p), ref.Len)
	}
	if ref.Zero {
		clear(p)
		return nil
	}
	if ref.Subvol == nil {
		return errors.New("sendgen: data reference without a subvolume")
	}
	if ref.Encoded {
		dc := btrfsread.DataContext{Subvol: ref.Subvol.ID, Ino: ref.Ino, FileOffset: ref.FileOffset}
		return ref.Subvol.FS().ReadEncoded(dc, &ref.Extent, p)
	}
	// An inline extent is sent up to i_size, which may lie past its data
	// (the file was extended by truncate): the rest reads as zeros.
	if avail := ref.Extent.Len(); ref.Offset+uint64(len(p)) > avail {
		n := uint64(0)
		if ref.Offset < avail {
			n = avail - ref.Offset
		}
		clear(p[n:])
		p = p[:n]
		if n == 0 {
			return nil
		}
	}
	dc := btrfsread.DataContext{Subvol: ref.Subvol.ID, Ino: ref.Ino, FileOffset: ref.FileOffset}
	planned := ref.Subvol.FS()
	if planned == nil {
		return errors.New("sendgen: data reference without a filesystem")
	}
	return planned.Retry(func(v *btrfsread.FS) error {
		if v == planned {
			return v.ReadExtent(dc, &ref.Extent, p, ref.Offset)
		}
		return readMoved(ref, v, p)
	})
}

// readMoved reads the bytes of ref at view v, a newer commit than the one
// ref was planned at (refresh.go): the extent may have moved, the file's
// bytes have not, so they are read as the file's content at its offset.
func readMoved(ref *DataRef, v *btrfsread.FS, p []byte) error {
	sv, err := sameSubvol(ref.Subvol, v)
	if err != nil {
		return err
	}
	n, err := sv.ReadAt(ref.Ino, p, int64(ref.FileOffset))
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = fmt.Errorf("subvolume %s inode %d is shorter than %d bytes at a newer commit", sv, ref.Ino, ref.FileOffset+uint64(len(p)))
	}
	return err
}

// appendData completes the data command whose prefix (appendPrefix) is
// all of cmd: it appends the data ref names, read by read, and seals the
// command.
func appendData(cmd []byte, ref *DataRef, read func(*DataRef, []byte) error) ([]byte, error) {
	n := len(cmd)
	cmd = slices.Grow(cmd, int(ref.Len))[:n+int(ref.Len)]
	if err := read(ref, cmd[n:]); err != nil {
		return cmd[:n], err
	}
	sealCommand(cmd)
	return cmd, nil
}

// cmdBufSize fits any whole protocol-1 command, whose length (header, TLVs
// and data) the kernel bounds by its 64 KiB send buffer; pipeline buffers
// start at this size. Later protocols' bigger commands grow them once, and
// the pool keeps them up to maxPooledBuf. The data commands of small files
// get buffers of smallBufSize from a pool of their own: WriteTo keeps up to
// readAhead of them per pass, a quarter of the memory.
const (
	cmdBufSize   = 64 << 10
	smallBufSize = 16 << 10
	maxPooledBuf = 256 << 10
)

var bufPool, smallBufPool = newBufPool(cmdBufSize), newBufPool(smallBufSize)

func newBufPool(size int) sync.Pool {
	return sync.Pool{New: func() any {
		b := make([]byte, 0, size)
		return &b
	}}
}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

// getBufFor returns a buffer for n bytes (a smaller one when n is small).
func getBufFor(n int) *[]byte {
	if n <= smallBufSize {
		return smallBufPool.Get().(*[]byte)
	}
	return getBuf()
}

// putBuf returns a buffer to its pool unless it grew beyond maxPooledBuf
// (keeping a huge buffer alive for every rare big command is worse).
func putBuf(b *[]byte) {
	switch c := cap(*b); {
	case c > maxPooledBuf:
		return
	case c < cmdBufSize:
		*b = (*b)[:0]
		smallBufPool.Put(b)
	default:
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}
