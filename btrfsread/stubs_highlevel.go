package btrfsread

// STUBS owned by the high-level helper (item parsing, subvolumes, inodes,
// file data). Each stub is replaced by a real implementation in its own file
// and deleted from here.

// Tree returns the tree with the given root id, found through its ROOT_ITEM.
func (fs *FS) Tree(id uint64) (Tree, error) { panic("unimplemented") }

// Subvolume is one subvolume (the top level, id 5, included).
type Subvolume struct {
	ID       uint64
	ParentID uint64 // id of the subvolume that links it (0 for id 5)
	DirID    uint64 // directory inode in ParentID holding it
	Name     string // name in that directory ("" for id 5)
	Path     string // path from the top level, "" for id 5
	Root     RootItem
	fs       *FS
}

// ReadOnly reports whether the subvolume is read-only.
func (sv *Subvolume) ReadOnly() bool { return sv.Root.Flags&RootSubvolReadOnly != 0 }

// FS returns the filesystem the subvolume belongs to.
func (sv *Subvolume) FS() *FS { return sv.fs }

// Subvolumes lists every subvolume, sorted by id.
func (fs *FS) Subvolumes() ([]*Subvolume, error) { panic("unimplemented") }

// Subvolume returns the subvolume with the given id, or ErrNotFound.
func (fs *FS) Subvolume(id uint64) (*Subvolume, error) { panic("unimplemented") }

// FindSubvolume resolves spec: a path from the top level (as Subvolume.Path,
// with or without a leading '/'), a decimal id, or a uuid.
func (fs *FS) FindSubvolume(spec string) (*Subvolume, error) { panic("unimplemented") }

// Tree returns the subvolume's fs tree.
func (sv *Subvolume) Tree() Tree { panic("unimplemented") }

// Inode returns the inode item of ino, or ErrNotFound.
func (sv *Subvolume) Inode(ino uint64) (InodeItem, error) { panic("unimplemented") }

// Refs returns every name of ino (refs and extrefs), in key order.
func (sv *Subvolume) Refs(ino uint64) ([]InodeRef, error) { panic("unimplemented") }

// ReadDir returns the entries of directory ino in DIR_INDEX order.
func (sv *Subvolume) ReadDir(ino uint64) ([]DirItem, error) { panic("unimplemented") }

// LookupName returns the entry name in directory dir (DIR_ITEM by name hash),
// or ErrNotFound.
func (sv *Subvolume) LookupName(dir uint64, name []byte) (DirItem, error) { panic("unimplemented") }

// Lookup resolves a slash-separated path from the subvolume root to an inode.
func (sv *Subvolume) Lookup(path string) (uint64, error) { panic("unimplemented") }

// Xattr is one extended attribute.
type Xattr struct {
	Name  []byte
	Value []byte
}

// Xattrs returns ino's xattrs in key (name hash) order.
func (sv *Subvolume) Xattrs(ino uint64) ([]Xattr, error) { panic("unimplemented") }

// Readlink returns a symlink's target.
func (sv *Subvolume) Readlink(ino uint64) ([]byte, error) { panic("unimplemented") }

// Extents calls fn for each EXTENT_DATA item of ino with key offset >= from,
// in offset order.
func (sv *Subvolume) Extents(ino, from uint64, fn func(off uint64, e *FileExtent) error) error {
	panic("unimplemented")
}

// ReadAt reads file ino's content (holes and prealloc as zeros, bounded by
// i_size) into p at off; it returns io.EOF like os.File.ReadAt at the end.
func (sv *Subvolume) ReadAt(ino uint64, p []byte, off int64) (int, error) { panic("unimplemented") }

// DataContext names what a data read is for, so that an error can say which
// subvolume, inode and file offset is affected.
type DataContext struct {
	Subvol     uint64
	Ino        uint64
	FileOffset uint64
}

// ReadExtent fills p with the file bytes of extent e starting off bytes after
// the extent's key offset (so off 0 is the first file byte e covers):
// decompressing compressed and inline extents, zeros for holes and prealloc.
// Data is verified against the csum tree; a bad copy falls back to the next
// mirror. off+len(p) must not exceed e.Len().
func (fs *FS) ReadExtent(ctx DataContext, e *FileExtent, p []byte, off uint64) error {
	panic("unimplemented")
}
