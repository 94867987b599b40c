package fusefs

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"sendfs/btrfsread"
)

// Names of snapshots in the mount.
//
// A subvolume's name is its path from the top level read backwards, the
// last component first, joined by " ‹ ": snaps/home.2026-11-01 is
// "home.2026-11-01 ‹ snaps", @/.snapshots/12/snapshot is
// "snapshot ‹ 12 ‹ .snapshots ‹ @". The part that tells snapshots apart
// comes first, where a file manager shows it, and the name is a function of
// the path alone, so it is the same on every mount.
//
// A path with '%' or '‹' in a component is written in the escaped form
// instead: the whole path with '%' as "%25", '/' as "%2F" and '‹' as
// "%E2%80%B9". Readable names never contain '%', escaped ones always do, so
// no two paths share a name. A name longer than maxNameLen keeps its first
// bytes and ends with "…~" and 16 hex digits of the path's SHA-256.
//
// The escaped form of earlier versions ('%' and '/' escaped, in path order)
// is still answered on lookup, though not listed.

// nameSep joins the components of a readable name.
const nameSep = " ‹ "

// maxNameLen bounds a snapshot name so that NAME.stream, the longest name
// built from it, fits the 255 bytes of a file name.
const maxNameLen = 255 - len(streamSuffix)

// mountName is the name of the subvolume at path in snapshots/.
func mountName(path string) string {
	comps := strings.Split(path, "/")
	if slices.ContainsFunc(comps, func(c string) bool { return strings.ContainsAny(c, "%\u2039") }) {
		return fitName(strings.ReplaceAll(escapeName(path), "\u2039", "%E2%80%B9"), path)
	}
	slices.Reverse(comps)
	return fitName(strings.Join(comps, nameSep), path)
}

// fitName shortens name to maxNameLen bytes when longer: its first bytes,
// cut at a character boundary, then "…~" and a hash of key.
func fitName(name, key string) string {
	if len(name) <= maxNameLen {
		return name
	}
	sum := sha256.Sum256([]byte(key))
	tail := "\u2026~" + hex.EncodeToString(sum[:8])
	cut := maxNameLen - len(tail)
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return name[:cut] + tail
}

// freeName is the name sv gets in c: mountName of its path, unless a
// subvolume listed before has it (only crafted names collide with a
// shortened or escaped one); then that name followed by "~" and sv's id.
func (c *catalog) freeName(sv *btrfsread.Subvolume) string {
	name := mountName(sv.Path)
	for n := uint64(0); c.byName[name] != nil; n++ {
		suffix := "~" + strconv.FormatUint(sv.ID+n, 10)
		name = fitName(mountName(sv.Path)+suffix, sv.Path+"\x00"+suffix)
	}
	return name
}

// lookupName finds the snapshot called name: its name, or the escaped
// form of earlier versions (scripts keep using it).
func (c *catalog) lookupName(name string) *snapshot {
	if s := c.byName[name]; s != nil {
		return s
	}
	path, ok := legacyPath(name)
	if !ok {
		return nil
	}
	if s := c.byName[mountName(path)]; s != nil && s.sv.Path == path {
		return s
	}
	return nil
}

// MountNames returns the name under snapshots/ of each subvolume of svs a
// mount serving all of them shows, by subvolume id ('sendfs list' prints
// them).
func MountNames(svs []*btrfsread.Subvolume) map[uint64]string {
	out := map[uint64]string{}
	for _, s := range newCatalog(svs, true).names {
		out[s.sv.ID] = s.name
	}
	return out
}

// escapeName is the escaped form of earlier versions: '%' becomes "%25" and
// '/' becomes "%2F".
func escapeName(path string) string {
	path = strings.ReplaceAll(path, "%", "%25")
	return strings.ReplaceAll(path, "/", "%2F")
}

// legacyPath decodes a name in the escaped form of earlier versions; ok is
// false when name is not in that form.
func legacyPath(name string) (path string, ok bool) {
	var b strings.Builder
	for {
		i := strings.IndexByte(name, '%')
		if i < 0 {
			b.WriteString(name)
			return b.String(), true
		}
		b.WriteString(name[:i])
		switch rest := name[i:]; {
		case strings.HasPrefix(rest, "%25"):
			b.WriteByte('%')
		case strings.HasPrefix(rest, "%2F"):
			b.WriteByte('/')
		default:
			return "", false
		}
		name = name[i+3:]
	}
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
	kindDiff
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
