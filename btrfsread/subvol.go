package btrfsread

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/google/uuid"
)

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

// String names the subvolume in messages and listings by its path from
// the top level, as a user can type it back (QuotePath); the top level is
// `<top level> (id 5)`.
func (sv *Subvolume) String() string {
	if sv.ID == FSTreeID {
		return "<top level> (id 5)"
	}
	return QuotePath(sv.Path)
}

// QuotePath is p as messages and listings print a path: quoted as a Go
// string when it holds bytes that are not printable UTF-8 (a newline or an
// invalid byte would break a line of output), else as it is.
func QuotePath(p string) string {
	if strings.ContainsFunc(p, func(r rune) bool { return r == unicode.ReplacementChar || !unicode.IsPrint(r) }) {
		return strconv.Quote(p)
	}
	return p
}

// Tree returns the tree with the given root id, found through its ROOT_ITEM.
func (fs *FS) Tree(id uint64) (Tree, error) {
	if id == RootTreeID {
		return fs.RootTree(), nil
	}
	if t, ok := fs.trees.Load(id); ok {
		return t.(Tree), nil
	}
	r, err := fs.rootItem(id)
	if err != nil {
		return Tree{}, err
	}
	t := fs.treeAt(id, r.Bytenr, r.Level, r.Generation)
	fs.trees.Store(id, t)
	return t, nil
}

// rootItem finds the ROOT_ITEM of tree id: the last (id, ROOT_ITEM, *) key,
// since a snapshot's item has its creation transid as offset.
func (fs *FS) rootItem(id uint64) (RootItem, error) {
	it, err := fs.RootTree().SearchBefore(Key{id, RootItemKey, ^uint64(0)})
	if err == nil && (it.Key.ObjectID != id || it.Key.Type != RootItemKey) {
		err = ErrNotFound
	}
	if err != nil {
		return RootItem{}, fmt.Errorf("root item of tree %d: %w", id, err)
	}
	r, err := ParseRootItem(it.Data)
	if err != nil {
		return RootItem{}, fmt.Errorf("root item of tree %d: %w", id, err)
	}
	return r, nil
}

// isSubvolID reports whether id can name a subvolume (fs tree).
func isSubvolID(id uint64) bool {
	return id == FSTreeID || (id >= FirstFreeObjectID && id <= LastFreeObjectID)
}

// Tree returns the subvolume's fs tree.
func (sv *Subvolume) Tree() Tree {
	return sv.fs.treeAt(sv.ID, sv.Root.Bytenr, sv.Root.Level, sv.Root.Generation)
}

// Subvolumes lists every subvolume, sorted by id. Deleted subvolumes whose
// trees are not yet cleaned up (no refs, or unlinked) are left out.
func (fs *FS) Subvolumes() ([]*Subvolume, error) {
	r := subvolResolver{fs: fs, known: map[uint64]*Subvolume{}}
	var ids []uint64
	last := ^uint64(0)
	err := fs.RootTree().Walk(Key{FSTreeID, RootItemKey, 0}, Key{LastFreeObjectID, RootItemKey, ^uint64(0)}, func(it Item) error {
		if it.Key.Type == RootItemKey && isSubvolID(it.Key.ObjectID) && it.Key.ObjectID != last {
			ids = append(ids, it.Key.ObjectID)
			last = it.Key.ObjectID
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing subvolumes: %w", err)
	}
	var out []*Subvolume
	for _, id := range ids {
		sv, err := r.resolve(id, 0)
		if errors.Is(err, errDeadSubvol) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Subvolume returns the subvolume with the given id, or ErrNotFound.
func (fs *FS) Subvolume(id uint64) (*Subvolume, error) {
	if !isSubvolID(id) {
		return nil, fmt.Errorf("subvolume %d: %w", id, ErrNotFound)
	}
	r := subvolResolver{fs: fs, known: map[uint64]*Subvolume{}}
	sv, err := r.resolve(id, 0)
	if errors.Is(err, errDeadSubvol) {
		return nil, fmt.Errorf("subvolume %d is deleted: %w", id, ErrNotFound)
	}
	return sv, err
}

// errDeadSubvol marks a subvolume that is deleted but not yet cleaned up.
var errDeadSubvol = fmt.Errorf("deleted subvolume: %w", ErrNotFound)

// subvolResolver builds subvolumes with their paths, resolving each parent
// once.
type subvolResolver struct {
	fs    *FS
	known map[uint64]*Subvolume
}

// maxSubvolDepth bounds nesting, so a cycle of backrefs in a corrupt image
// ends in an error.
const maxSubvolDepth = 512

func (r *subvolResolver) resolve(id uint64, depth int) (*Subvolume, error) {
	if sv := r.known[id]; sv != nil {
		return sv, nil
	}
	if depth > maxSubvolDepth {
		return nil, &CorruptError{Reason: "subvolume nesting too deep or cyclic", Value: id}
	}
	root, err := r.fs.rootItem(id)
	if err != nil {
		return nil, err
	}
	if root.Refs == 0 {
		return nil, errDeadSubvol
	}
	sv := &Subvolume{ID: id, Root: root, fs: r.fs}
	if id != FSTreeID {
		if err := r.link(sv, depth); err != nil {
			return nil, err
		}
	}
	r.known[id] = sv
	return sv, nil
}

// link fills in where sv is linked: its ROOT_BACKREF (id, 144, parent) and
// the path of that directory inside the parent subvolume.
func (r *subvolResolver) link(sv *Subvolume, depth int) error {
	it, err := r.fs.RootTree().SearchBefore(Key{sv.ID, RootBackrefKey, ^uint64(0)})
	if err == nil && (it.Key.ObjectID != sv.ID || it.Key.Type != RootBackrefKey) {
		err = ErrNotFound
	}
	if errors.Is(err, ErrNotFound) {
		return errDeadSubvol // unlinked: deleted, waiting for cleanup
	}
	if err != nil {
		return fmt.Errorf("subvolume %d backref: %w", sv.ID, err)
	}
	ref, err := ParseRootRef(it.Data)
	if err != nil {
		return fmt.Errorf("subvolume %d backref: %w", sv.ID, err)
	}
	parent, err := r.resolve(it.Key.Offset, depth+1)
	if err != nil {
		return fmt.Errorf("parent of subvolume %d: %w", sv.ID, err)
	}
	dir, err := parent.dirPath(ref.DirID)
	if err != nil {
		return fmt.Errorf("path of subvolume %d: %w", sv.ID, err)
	}
	sv.ParentID, sv.DirID, sv.Name = parent.ID, ref.DirID, string(ref.Name)
	sv.Path = joinPath(parent.Path, dir, sv.Name)
	return nil
}

// dirPath returns the path of directory ino from the subvolume root, by
// following its (single) INODE_REF upwards.
func (sv *Subvolume) dirPath(ino uint64) (string, error) {
	var names []string
	for ino != FirstFreeObjectID {
		if len(names) > 4096 {
			return "", &CorruptError{Reason: "directory path too deep or cyclic", Value: ino}
		}
		refs, err := sv.Refs(ino)
		if err != nil {
			return "", err
		}
		if len(refs) == 0 {
			return "", fmt.Errorf("subvolume %d directory %d has no name: %w", sv.ID, ino, ErrNotFound)
		}
		names = append(names, string(refs[0].Name))
		ino = refs[0].Parent
	}
	for i, j := 0, len(names)-1; i < j; i, j = i+1, j-1 {
		names[i], names[j] = names[j], names[i]
	}
	return strings.Join(names, "/"), nil
}

// joinPath joins non-empty path parts with '/'.
func joinPath(parts ...string) string {
	var nonEmpty []string
	for _, p := range parts {
		if p != "" {
			nonEmpty = append(nonEmpty, p)
		}
	}
	return strings.Join(nonEmpty, "/")
}

// FindSubvolume resolves spec: a path from the top level (as Subvolume.Path,
// with or without a leading '/'), a decimal id, or a uuid. A bare number is
// an id when such a subvolume exists; "/123" is always a path.
func (fs *FS) FindSubvolume(spec string) (*Subvolume, error) {
	if len(spec) == 36 {
		if u, err := uuid.Parse(spec); err == nil {
			sv, err := fs.SubvolumeByUUID(UUID(u))
			return sv, notFoundSpec(spec, err)
		}
	}
	if id, err := strconv.ParseUint(spec, 10, 64); err == nil {
		sv, err := fs.Subvolume(id)
		if !errors.Is(err, ErrNotFound) {
			return sv, err
		}
	}
	path := strings.Trim(spec, "/")
	if path == "" {
		return fs.Subvolume(FSTreeID)
	}
	all, err := fs.Subvolumes()
	if err != nil {
		return nil, err
	}
	for _, sv := range all {
		if sv.Path == path {
			return sv, nil
		}
	}
	return nil, notFoundSpec(spec, ErrNotFound)
}

// notFoundSpec turns a not-found error into the message users see.
func notFoundSpec(spec string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("no subvolume %s: %w", spec, ErrNotFound)
	}
	return err
}

// SubvolumeByUUID returns the subvolume whose uuid is u, through the uuid
// tree when there is one, else by scanning every subvolume.
func (fs *FS) SubvolumeByUUID(u UUID) (*Subvolume, error) {
	ids, err := fs.uuidTreeLookup(u, UUIDKeySubvol)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	for _, id := range ids {
		sv, err := fs.Subvolume(id)
		if err == nil && sv.Root.UUID == u {
			return sv, nil
		}
	}
	all, err := fs.Subvolumes()
	if err != nil {
		return nil, err
	}
	for _, sv := range all {
		if sv.Root.UUID == u {
			return sv, nil
		}
	}
	return nil, fmt.Errorf("subvolume with uuid %s: %w", uuid.UUID(u), ErrNotFound)
}

// uuidTreeLookup returns the subvolume ids stored under u with the given key
// type (UUIDKeySubvol or UUIDKeyReceived) in the uuid tree.
func (fs *FS) uuidTreeLookup(u UUID, typ uint8) ([]uint64, error) {
	t, err := fs.Tree(UUIDTreeID)
	if err != nil {
		return nil, err
	}
	k := Key{binary.LittleEndian.Uint64(u[:8]), typ, binary.LittleEndian.Uint64(u[8:])}
	it, err := t.Search(k)
	if err != nil {
		return nil, err
	}
	if len(it.Data)%8 != 0 {
		return nil, &CorruptError{Logical: it.Leaf, Reason: "uuid item size not a multiple of 8", Value: len(it.Data)}
	}
	ids := make([]uint64, 0, len(it.Data)/8)
	for b := it.Data; len(b) > 0; b = b[8:] {
		ids = append(ids, binary.LittleEndian.Uint64(b))
	}
	return ids, nil
}
