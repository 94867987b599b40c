package btrfsread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	lzo "github.com/anchore/go-lzo"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// decompressors maps a btrfs compression type to the function that fills
// dst (sized to ram_bytes, zeroed) from one compressed extent. Each returns
// how many bytes it produced.
var decompressors = map[uint8]func(src, dst []byte, sectorSize int) (int, error){
	CompressZlib: decompressZlib,
	CompressLZO:  decompressLZO,
	CompressZstd: decompressZstd,
}

// decompressExtent decompresses one extent (or compressed inline payload) to
// exactly ram bytes. A stream that ends early is zero-filled, as the kernel
// does: it compresses only up to i_size, while ram_bytes is rounded up to a
// sector (and the file may grow later, exposing those zeros).
func decompressExtent(alg uint8, src []byte, ram, sectorSize int) ([]byte, error) {
	fn := decompressors[alg]
	if fn == nil {
		return nil, fmt.Errorf("%w: compression type %d", ErrUnsupported, alg)
	}
	if ram < 0 || ram > maxCompressedRam {
		return nil, &CorruptError{Reason: "compressed extent size out of range", Value: ram}
	}
	dst := make([]byte, ram)
	if _, err := fn(src, dst, sectorSize); err != nil {
		return nil, err
	}
	return dst, nil
}

var zlibReaders sync.Pool // of io.ReadCloser implementing zlib.Resetter

func decompressZlib(src, dst []byte, _ int) (int, error) {
	var r io.ReadCloser
	var err error
	if pooled, ok := zlibReaders.Get().(io.ReadCloser); ok {
		r, err = pooled, pooled.(zlib.Resetter).Reset(bytes.NewReader(src), nil)
	} else {
		r, err = zlib.NewReader(bytes.NewReader(src))
	}
	if err != nil {
		return 0, &CorruptError{Reason: "bad zlib header", Value: err}
	}
	defer zlibReaders.Put(r)
	// Stop at ram_bytes: the adler32 trailer and the sector padding after
	// it are never needed.
	return readCompressed(r, dst, "zlib", nil)
}

var zstdDecoders = sync.Pool{New: func() any {
	// One synchronous decoder per user; the window bound keeps hostile
	// frames from allocating much (btrfs uses windows of at most 128 KiB).
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(8<<20), zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		panic(err) // only bad options fail
	}
	return d
}}

// decompressZstd uses the streaming decoder: DecodeAll rejects btrfs
// extents, whose frames are padded to a sector.
func decompressZstd(src, dst []byte, _ int) (int, error) {
	d := zstdDecoders.Get().(*zstd.Decoder)
	defer zstdDecoders.Put(d)
	if err := d.Reset(bytes.NewReader(src)); err != nil {
		return 0, &CorruptError{Reason: "bad zstd frame", Value: err}
	}
	// After a frame that ends early the decoder looks for a next frame in
	// the sector padding: that is the end of the data.
	return readCompressed(d, dst, "zstd", func(err error) bool { return errors.Is(err, zstd.ErrMagicMismatch) })
}

// readCompressed fills dst from a decompressing reader, returning the count
// produced; the end of the stream (EOF, or an error isEnd accepts) is not an
// error, a corrupt stream is.
func readCompressed(r io.Reader, dst []byte, alg string, isEnd func(error) bool) (int, error) {
	n, err := io.ReadFull(r, dst)
	end := err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || (n > 0 && isEnd != nil && isEnd(err))
	if !end {
		return n, &CorruptError{Reason: "bad " + alg + " data", Value: err}
	}
	return n, nil
}

// decompressLZO decodes btrfs's LZO framing: a u32 LE total length (these 4
// bytes included), then segments of a u32 LE length and LZO1X data that each
// decode to at most one sector. A segment header never straddles a sector
// boundary: fewer than 4 bytes left in a sector are padding.
func decompressLZO(src, dst []byte, sectorSize int) (int, error) {
	const hdr = 4
	bad := func(reason string, v any) (int, error) {
		return 0, &CorruptError{Reason: "lzo: " + reason, Value: v}
	}
	if len(src) < hdr || sectorSize < 2*hdr {
		return bad("extent too short", len(src))
	}
	total := int64(binary.LittleEndian.Uint32(src))
	if total < hdr || total > int64(len(src)) {
		return bad("bad total length", fmt.Sprintf("%d of %d bytes", total, len(src)))
	}
	pos, out := hdr, 0
	for out < len(dst) && int64(pos) < total {
		if rest := sectorSize - pos%sectorSize; rest < hdr {
			pos += rest
			if int64(pos) >= total {
				break
			}
		}
		if int64(pos+hdr) > total {
			return bad("segment header beyond end", pos)
		}
		segLen := int64(binary.LittleEndian.Uint32(src[pos:]))
		pos += hdr
		if segLen > total-int64(pos) {
			return bad("segment beyond end", fmt.Sprintf("%d bytes at %d", segLen, pos))
		}
		n, err := lzo.Decompress(src[pos:pos+int(segLen)], dst[out:min(out+sectorSize, len(dst))])
		if err != nil {
			return bad("bad segment", fmt.Sprintf("at %d: %v", pos, err))
		}
		pos += int(segLen)
		out += n
	}
	return out, nil
}
