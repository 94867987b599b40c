package btrfsread

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// inodeErr wraps err with the subvolume and inode it concerns.
func (sv *Subvolume) inodeErr(ino uint64, what string, err error) error {
	return &inodeError{subvol: sv.ID, ino: ino, what: what, err: err}
}

// inodeError is inodeErr's error, formatted only when printed: a send
// looks up many names and inodes that are not there (ErrNotFound is an
// answer, not a failure), and formatting each cost more than the lookup.
type inodeError struct {
	subvol, ino uint64
	what        string
	entry       []byte // for a directory entry: its name (what is unused)
	err         error
}

func (e *inodeError) Error() string {
	what := e.what
	if e.entry != nil {
		what = fmt.Sprintf("entry %q", e.entry)
	}
	return fmt.Sprintf("subvolume %d inode %d %s: %v", e.subvol, e.ino, what, e.err)
}

func (e *inodeError) Unwrap() error { return e.err }

// Inode returns the inode item of ino, or ErrNotFound.
func (sv *Subvolume) Inode(ino uint64) (InodeItem, error) {
	it, err := sv.Tree().Search(Key{ino, InodeItemKey, 0})
	if err != nil {
		return InodeItem{}, sv.inodeErr(ino, "item", err)
	}
	inode, err := ParseInodeItem(it.Data)
	if err != nil {
		return InodeItem{}, sv.inodeErr(ino, "item", err)
	}
	return inode, nil
}

// walkItems calls fn for every item of ino with a key type in [from, to].
func (sv *Subvolume) walkItems(ino uint64, from, to uint8, fn func(Item) error) error {
	return sv.Tree().Walk(Key{ino, from, 0}, Key{ino, to, ^uint64(0)}, fn)
}

// Refs returns every name of ino (refs and extrefs), in key order.
func (sv *Subvolume) Refs(ino uint64) ([]InodeRef, error) {
	var refs []InodeRef
	err := sv.walkItems(ino, InodeRefKey, InodeExtrefKey, func(it Item) error {
		r, err := ParseInodeRefs(it.Key, it.Data)
		refs = append(refs, r...)
		return err
	})
	if err != nil {
		return nil, sv.inodeErr(ino, "refs", err)
	}
	return refs, nil
}

// ReadDir returns the entries of directory ino in DIR_INDEX order.
func (sv *Subvolume) ReadDir(ino uint64) ([]DirItem, error) {
	var ents []DirItem
	err := sv.walkItems(ino, DirIndexKey, DirIndexKey, func(it Item) error {
		d, err := ParseDirItems(it.Key, it.Data)
		ents = append(ents, d...)
		return err
	})
	if err != nil {
		return nil, sv.inodeErr(ino, "directory", err)
	}
	return ents, nil
}

// LookupName returns the entry name in directory dir (DIR_ITEM by name hash),
// or ErrNotFound.
func (sv *Subvolume) LookupName(dir uint64, name []byte) (DirItem, error) {
	it, err := sv.Tree().Search(Key{dir, DirItemKey, NameHash(name)})
	if err == nil {
		var ents []DirItem
		ents, err = ParseDirItems(it.Key, it.Data)
		for _, d := range ents {
			if bytes.Equal(d.Name, name) {
				return d, nil
			}
		}
		if err == nil {
			err = ErrNotFound
		}
	}
	return DirItem{}, &inodeError{subvol: sv.ID, ino: dir, entry: bytes.Clone(name), err: err}
}

// Lookup resolves a slash-separated path from the subvolume root to an inode.
// Empty and "." components are skipped; ".." and paths that enter a nested
// subvolume are refused.
func (sv *Subvolume) Lookup(path string) (uint64, error) {
	ino := uint64(FirstFreeObjectID)
	for _, name := range strings.Split(path, "/") {
		switch name {
		case "", ".":
			continue
		case "..":
			return 0, fmt.Errorf("subvolume %d path %q: '..' is not supported: %w", sv.ID, path, ErrNotFound)
		}
		d, err := sv.LookupName(ino, []byte(name))
		if err != nil {
			return 0, fmt.Errorf("subvolume %d path %q: %w", sv.ID, path, err)
		}
		if d.Location.Type == RootItemKey {
			return 0, fmt.Errorf("subvolume %d path %q: %s is subvolume %d: %w", sv.ID, path, name, d.Location.ObjectID, ErrNotFound)
		}
		ino = d.Location.ObjectID
	}
	return ino, nil
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  []byte
	Value []byte
}

// Xattrs returns ino's xattrs in key (name hash) order.
func (sv *Subvolume) Xattrs(ino uint64) ([]Xattr, error) {
	var xs []Xattr
	err := sv.walkItems(ino, XattrItemKey, XattrItemKey, func(it Item) error {
		ents, err := ParseDirItems(it.Key, it.Data)
		for _, d := range ents {
			xs = append(xs, Xattr{Name: d.Name, Value: d.Data})
		}
		return err
	})
	if err != nil {
		return nil, sv.inodeErr(ino, "xattrs", err)
	}
	return xs, nil
}

// Readlink returns a symlink's target: the inline extent at offset 0.
func (sv *Subvolume) Readlink(ino uint64) ([]byte, error) {
	it, err := sv.Tree().Search(Key{ino, ExtentDataKey, 0})
	if err != nil {
		return nil, sv.inodeErr(ino, "symlink target", err)
	}
	e, err := ParseFileExtent(it.Data)
	if err == nil && e.Type != ExtentInline {
		err = &CorruptError{Reason: "symlink target is not inline", Value: e.Type}
	}
	if err != nil {
		return nil, sv.inodeErr(ino, "symlink target", it.named(err))
	}
	target := make([]byte, e.RamBytes)
	if err := sv.fs.ReadExtent(DataContext{Subvol: sv.ID, Ino: ino}, &e, target, 0); err != nil {
		return nil, err
	}
	if err := checkLinkTarget(target); err != nil {
		return nil, sv.inodeErr(ino, "symlink target", it.named(err))
	}
	return target, nil
}

// checkLinkTarget rejects targets no kernel writes: empty, longer than a
// path, or holding NUL.
func checkLinkTarget(b []byte) error {
	if len(b) == 0 || len(b) > 4095 || bytes.IndexByte(b, 0) >= 0 {
		return &CorruptError{Reason: "bad symlink target", Value: fmt.Sprintf("%q", b)}
	}
	return nil
}

// Extents calls fn for each EXTENT_DATA item of ino in offset order, starting
// with the extent that covers file offset from (or the first after it).
func (sv *Subvolume) Extents(ino, from uint64, fn func(off uint64, e *FileExtent) error) error {
	t := sv.Tree()
	start := from
	prev, err := t.SearchBefore(Key{ino, ExtentDataKey, from})
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return sv.inodeErr(ino, "extents", err)
	case prev.Key.ObjectID == ino && prev.Key.Type == ExtentDataKey && prev.Key.Offset < from:
		e, err := ParseFileExtent(prev.Data)
		if err != nil {
			return sv.inodeErr(ino, fmt.Sprintf("extent at %d", prev.Key.Offset), err)
		}
		if prev.Key.Offset+e.Len() > from {
			start = prev.Key.Offset
		}
	}
	return t.Walk(Key{ino, ExtentDataKey, start}, Key{ino, ExtentDataKey, ^uint64(0)}, func(it Item) error {
		e, err := ParseFileExtent(it.Data)
		if err != nil {
			return sv.inodeErr(ino, fmt.Sprintf("extent at %d", it.Key.Offset), err)
		}
		return fn(it.Key.Offset, &e)
	})
}
