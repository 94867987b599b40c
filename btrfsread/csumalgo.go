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
	name string
	size int
	sum  func(b []byte) []byte
}

var csumAlgos = map[uint16]csumAlgo{
	CsumCRC32C: {"crc32c", 4, func(b []byte) []byte {
		return binary.LittleEndian.AppendUint32(nil, crc32.Checksum(b, crc32cTable))
	}},
	CsumXXHash64: {"xxhash64", 8, func(b []byte) []byte {
		return binary.LittleEndian.AppendUint64(nil, xxhash.Sum64(b))
	}},
	CsumSHA256: {"sha256", 32, func(b []byte) []byte {
		s := sha256.Sum256(b)
		return s[:]
	}},
	CsumBlake2b: {"blake2b", 32, func(b []byte) []byte {
		s := blake2b.Sum256(b)
		return s[:]
	}},
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
// to csumSize.
func (fs *FS) checksum(b []byte) []byte { return fs.csum.sum(b) }

// csumSize is the on-disk size of one checksum (4, 8 or 32).
func (fs *FS) csumSize() int { return fs.csum.size }
