package fusefs

import (
	"context"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"sendfs/btrfsread"
)

// rootContents: the three top directories.
type rootContents struct{}

var topDirs = []struct {
	name string
	ino  uint64
	c    dirContents
}{
	{"by-id", inoByID, byIDContents{}},
	{"by-uuid", inoByUUID, byUUIDContents{}},
	{"snapshots", inoSnapshots, snapshotsContents{}},
}

func (rootContents) list(r *Root) []fuse.DirEntry {
	var out []fuse.DirEntry
	for _, d := range topDirs {
		out = append(out, dirEntry(d.name, d.ino))
	}
	return out
}

func (rootContents) child(ctx context.Context, r *Root, name string) (node, syscall.Errno) {
	for _, d := range topDirs {
		if d.name == name {
			return r.newDir(d.ino, 0, btrfsread.Timespec{}, d.c), 0
		}
	}
	return nil, syscall.ENOENT
}

// snapshotsContents: one directory per served subvolume.
type snapshotsContents struct{}

func (snapshotsContents) list(r *Root) []fuse.DirEntry {
	cat := r.catalog()
	out := make([]fuse.DirEntry, 0, len(cat.names))
	for _, s := range cat.names {
		out = append(out, dirEntry(s.name, inodeNumber(kindSnapDir, s.sv.ID, 0)))
	}
	return out
}

func (snapshotsContents) child(ctx context.Context, r *Root, name string) (node, syscall.Errno) {
	s := r.catalog().lookupName(name)
	if s == nil {
		return nil, syscall.ENOENT
	}
	return r.newDir(inodeNumber(kindSnapDir, s.sv.ID, 0), s.ident, creationTime(s.sv), snapContents{s}), 0
}

// snapContents: full.stream and from/ of one snapshot.
type snapContents struct{ s *snapshot }

const (
	fullName = "full" + streamSuffix
	fromName = "from"
)

func (c snapContents) list(r *Root) []fuse.DirEntry {
	if r.catalog().current(c.s) == nil {
		return nil // deleted or renamed since
	}
	return []fuse.DirEntry{
		{Name: fullName, Ino: pair{child: c.s}.ino(), Mode: fuse.S_IFREG},
		dirEntry(fromName, inodeNumber(kindFromDir, c.s.sv.ID, 0)),
	}
}

func (c snapContents) child(ctx context.Context, r *Root, name string) (node, syscall.Errno) {
	s := r.catalog().current(c.s)
	switch {
	case s == nil:
		return nil, syscall.ENOENT
	case name == fullName:
		return r.newStreamFile(ctx, s, nil)
	case name == fromName:
		return r.newDir(inodeNumber(kindFromDir, s.sv.ID, 0), s.ident, creationTime(s.sv), fromContents{s}), 0
	}
	return nil, syscall.ENOENT
}

// fromContents: incremental streams of one snapshot. It lists the parents of
// the same lineage and answers any other served subvolume by name, and
// <parent>.diff (not listed) with what changed from that parent.
type fromContents struct{ s *snapshot }

func (c fromContents) list(r *Root) []fuse.DirEntry {
	s := r.catalog().current(c.s)
	if s == nil {
		return nil // deleted or renamed since
	}
	out := make([]fuse.DirEntry, 0, len(s.related))
	for _, p := range s.related {
		out = append(out, fuse.DirEntry{
			Name: p.name + streamSuffix,
			Ino:  pair{child: s, parent: p}.ino(),
			Mode: fuse.S_IFREG,
		})
	}
	r.prefetchFrom(s)
	return out
}

func (c fromContents) child(ctx context.Context, r *Root, name string) (node, syscall.Errno) {
	cat := r.catalog()
	s := cat.current(c.s)
	if s == nil {
		return nil, syscall.ENOENT
	}
	if base, ok := strings.CutSuffix(name, diffSuffix); ok {
		if p := cat.lookupName(base); p != nil && p != s {
			return r.newDiffFile(ctx, s, p)
		}
		return nil, syscall.ENOENT
	}
	base, ok := strings.CutSuffix(name, streamSuffix)
	p := cat.lookupName(base)
	if !ok || p == nil || p == s {
		return nil, syscall.ENOENT
	}
	return r.newStreamFile(ctx, s, p)
}

// byIDContents: a symlink per subvolume id.
type byIDContents struct{}

func (byIDContents) list(r *Root) []fuse.DirEntry {
	cat := r.catalog()
	out := make([]fuse.DirEntry, 0, len(cat.ids))
	for _, s := range cat.ids {
		out = append(out, linkEntry(strconv.FormatUint(s.sv.ID, 10), inodeNumber(kindByID, s.sv.ID, 0)))
	}
	return out
}

func (byIDContents) child(ctx context.Context, r *Root, name string) (node, syscall.Errno) {
	s := r.catalog().lookupID(name)
	if s == nil {
		return nil, syscall.ENOENT
	}
	return r.newLink(inodeNumber(kindByID, s.sv.ID, 0), s), 0
}

// byUUIDContents: a symlink per subvolume uuid.
type byUUIDContents struct{}

func (byUUIDContents) list(r *Root) []fuse.DirEntry {
	cat := r.catalog()
	out := make([]fuse.DirEntry, 0, len(cat.uuids))
	for _, s := range cat.uuids {
		out = append(out, linkEntry(s.uuid, inodeNumber(kindByUUID, s.sv.ID, 0)))
	}
	return out
}

func (byUUIDContents) child(ctx context.Context, r *Root, name string) (node, syscall.Errno) {
	s := r.catalog().byUUID[name]
	if s == nil {
		return nil, syscall.ENOENT
	}
	return r.newLink(inodeNumber(kindByUUID, s.sv.ID, 0), s), 0
}
