package fusefs

import (
	"hash/fnv"
	"strings"

	"sendfs/btrfsread"
)

// escapeName turns a subvolume path from the top level into one file name:
// '%' becomes "%25" and '/' becomes "%2F", so the mapping is reversible.
func escapeName(path string) string {
	path = strings.ReplaceAll(path, "%", "%25")
	return strings.ReplaceAll(path, "/", "%2F")
}

// streamSuffix ends every stream file name.
const streamSuffix = ".stream"

// Fixed inode numbers of the top directories; everything else is derived
// from subvolume ids by inodeNumber so that `ls -i` and find are stable
// across mounts.
const (
	inoRoot      = 1
	inoSnapshots = 2
	inoByID      = 3
	inoByUUID    = 4
)

// Kinds of derived inodes, kept in the top bits of the inode number.
const (
	kindSnapDir = iota + 1
	kindFromDir
	kindFull
	kindIncremental
	kindByID
	kindByUUID
)

// inodeNumber derives a deterministic inode number for a node of kind about
// subvolume a (and b, the parent of an incremental stream). Ids below 2^30,
// which is every real filesystem, pack without loss; larger ones hash into
// the upper half of the number space, which the packed form never uses.
func inodeNumber(kind, a, b uint64) uint64 {
	const bits = 30
	if a < 1<<bits && b < 1<<bits {
		return kind<<(2*bits) | a<<bits | b
	}
	h := fnv.New64a()
	var buf [24]byte
	for i, v := range []uint64{kind, a, b} {
		for j := range 8 {
			buf[i*8+j] = byte(v >> (8 * j))
		}
	}
	h.Write(buf[:])
	// Bit 63 set marks the hashed half; never all ones (reserved).
	return (h.Sum64() | 1<<63) &^ 1
}

// creationTime is the time a stream file shows as its mtime: the child's
// creation time (otime), or its ctime on filesystems that predate otime.
func creationTime(sv *btrfsread.Subvolume) btrfsread.Timespec {
	if t := sv.Root.OTime; t != (btrfsread.Timespec{}) {
		return t
	}
	return sv.Root.CTime
}
