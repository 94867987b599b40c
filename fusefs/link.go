package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// link is a by-id/ or by-uuid/ symlink to a snapshot directory.
type link struct {
	fs.Inode
	statfsNode
	r      *Root
	ino    uint64
	s      *snapshot
	target string
}

func (r *Root) newLink(ino uint64, s *snapshot) *link {
	return &link{r: r, ino: ino, s: s, target: "../snapshots/" + s.name}
}

func linkEntry(name string, ino uint64) fuse.DirEntry {
	return fuse.DirEntry{Name: name, Ino: ino, Mode: fuse.S_IFLNK}
}

func (l *link) stable() fs.StableAttr {
	return fs.StableAttr{Mode: fuse.S_IFLNK, Ino: l.ino, Gen: l.s.ident}
}

func (l *link) fillAttr(out *fuse.Attr) {
	out.Ino = l.ino
	out.Mode = fuse.S_IFLNK | 0o777
	out.Nlink = 1
	out.Size = uint64(len(l.target))
	l.r.fillCommon(out, creationTime(l.s.sv))
}

func (l *link) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l.fillAttr(&out.Attr)
	return 0
}

func (l *link) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(l.target), 0
}
