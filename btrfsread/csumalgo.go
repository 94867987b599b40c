package btrfsread

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/crypto/blake2b"
)

// Checksum types (superblock csum_type).
const (
	CsumCRC32C   = 0
	CsumXXHash64 = 1
	CsumSHA256   = 2
	CsumBlake2b  = 3
)

// crc32cTable is built once: MakeTable picks the hardware implementation.
var crc32cTable = crc32.MakeTable(crc32.Castagnoli)

// csumAlgo is one checksum algorithm in its on-disk byte form.
type csumAlgo struct {
	typ  uint16
	name string
	size int
}

var csumAlgos = map[uint16]csumAlgo{
	CsumCRC32C:   {CsumCRC32C, "crc32c", 4},
	CsumXXHash64: {CsumXXHash64, "xxhash64", 8},
	CsumSHA256:   {CsumSHA256, "sha256", 32},
	CsumBlake2b:  {CsumBlake2b, "blake2b", 32},
}

// sum computes the checksum of b in its on-disk byte form into buf and
// returns it (size bytes of buf): a caller's array on its stack, as this
// runs for every sector read.
func (a csumAlgo) sum(buf *[32]byte, b []byte) []byte {
	switch a.typ {
	case CsumCRC32C:
		binary.LittleEndian.PutUint32(buf[:], crc32.Checksum(b, crc32cTable))
	case CsumXXHash64:
		binary.LittleEndian.PutUint64(buf[:], xxhash.Sum64(b))
	case CsumSHA256:
		*buf = sha256.Sum256(b)
	case CsumBlake2b:
		*buf = blake2b.Sum256(b)
	}
	return buf[:a.size]
}

// csumAlgoFor returns the algorithm of a csum_type, or an ErrUnsupported
// error for an unknown type.
func csumAlgoFor(t uint16) (csumAlgo, error) {
	a, ok := csumAlgos[t]
	if !ok {
		return csumAlgo{}, sentinelf(ErrUnsupported, "filesystem uses checksum type %d, which sendfs cannot read", t)
	}
	return a, nil
}

// checksum computes the filesystem's checksum (crc32c, xxhash64, sha256 or
// blake2b-256 per the superblock) of b, in its on-disk byte form, truncated
// to csumSize, into buf.
func (fs *FS) checksum(buf *[32]byte, b []byte) []byte { return fs.csum.sum(buf, b) }

// csumSize is the on-disk size of one checksum (4, 8 or 32).
func (fs *FS) csumSize() int { return fs.csum.size }
