package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"sendfs/btrfsread"
)

// node is what every node of the tree provides to the directory that looks
// it up: its identity and its attributes.
type node interface {
	fs.InodeEmbedder
	stable() fs.StableAttr
	fillAttr(out *fuse.Attr)
}

// dirContents is what distinguishes one kind of directory from another: what
// it lists and what it answers. Lookup may answer names it does not list.
type dirContents interface {
	list(r *Root) []fuse.DirEntry
	child(ctx context.Context, r *Root, name string) (node, syscall.Errno)
}

// dir is a read-only directory whose children come from its contents.
type dir struct {
	fs.Inode
	statfsNode
	r        *Root
	ino      uint64
	gen      uint64 // the snapshot's ident for its directories, else 0
	mtime    btrfsread.Timespec
	contents dirContents
}

func (d *dir) stable() fs.StableAttr {
	return fs.StableAttr{Mode: fuse.S_IFDIR, Ino: d.ino, Gen: d.gen}
}

func (d *dir) fillAttr(out *fuse.Attr) {
	out.Ino = d.ino
	out.Mode = fuse.S_IFDIR | 0o500
	out.Nlink = 2
	t := d.mtime
	if d.ino <= inoByUUID {
		// The top directories change with the subvolume list.
		t = d.r.catalog().mtime
	}
	d.r.fillCommon(out, t)
}

func (d *dir) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fillAttr(&out.Attr)
	return 0
}

func (d *dir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	return fs.NewListDirStream(d.contents.list(d.r)), 0
}

func (d *dir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n, errno := d.contents.child(ctx, d.r, name)
	if errno != 0 {
		return nil, errno
	}
	n.fillAttr(&out.Attr)
	return d.NewInode(ctx, n, n.stable()), 0
}

// fillCommon sets what all nodes share: owner and times.
func (r *Root) fillCommon(out *fuse.Attr, t btrfsread.Timespec) {
	out.Owner = fuse.Owner{Uid: r.owner.uid, Gid: r.owner.gid}
	out.Mtime, out.Mtimensec = t.Sec, t.Nsec
	out.Ctime, out.Ctimensec = t.Sec, t.Nsec
	out.Atime, out.Atimensec = t.Sec, t.Nsec
}

func (r *Root) newDir(ino, gen uint64, mtime btrfsread.Timespec, c dirContents) *dir {
	return &dir{r: r, ino: ino, gen: gen, mtime: mtime, contents: c}
}

func dirEntry(name string, ino uint64) fuse.DirEntry {
	return fuse.DirEntry{Name: name, Ino: ino, Mode: fuse.S_IFDIR}
}
