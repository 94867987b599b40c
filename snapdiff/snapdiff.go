// Package snapdiff tells what changed between two snapshots, as paths a
// person reads: added, deleted, modified (data, or metadata only) and
// renamed or moved. It is computed from the incremental send stream's
// commands (sendgen.Stream.Commands, no file data read), replayed on a
// model of the parent's namespace in which only the entries the stream
// touches are materialized, so it costs what the stream's metadata costs.
package snapdiff

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"sendfs/btrfsread"
	"sendfs/sendgen"
)

// Kind is what happened to a path.
type Kind string

// The kinds of change, in the order a listing groups them.
const (
	Added    Kind = "added"    // new in the child (a new file, or a new hard link)
	Deleted  Kind = "deleted"  // gone from the parent
	Renamed  Kind = "renamed"  // moved or renamed (and maybe modified too)
	Modified Kind = "modified" // data changed (and maybe metadata)
	Metadata Kind = "metadata" // only metadata changed
)

// Change is one changed path.
type Change struct {
	Kind Kind   `json:"kind"`
	Path string `json:"path"` // in the child; for Deleted, in the parent ("." is the root)
	From string `json:"from,omitempty"`
	Type string `json:"type"` // file, dir, symlink, fifo, socket, char, block
	// Size is the child's size (the parent's for Deleted), OldSize the
	// parent's, for regular files and symlinks.
	Size    *uint64 `json:"size,omitempty"`
	OldSize *uint64 `json:"old_size,omitempty"`
	// Data: the contents were rewritten (Modified, and Renamed ones).
	Data bool `json:"data,omitempty"`
	// Meta lists what metadata differs: mode, owner, mtime, xattrs.
	Meta []string `json:"metadata,omitempty"`

	ino uint64 // in the child, for Modified and Metadata
}

// entry is a name in the model of the receiving tree, as the stream's
// commands see it while they run.
type entry struct {
	name   string
	parent *entry
	// children are the materialized entries below a directory; gone marks
	// names of the parent snapshot's directory that were moved or removed.
	children map[string]*entry
	gone     map[string]bool
	// existed: the entry is a name of the parent snapshot, at origName in
	// origParent; its original children are implicit until touched.
	existed    bool
	origName   string
	origParent *entry
	live       bool
	ino        *inode
}

// inode is what the commands tell of one inode: whether the stream created
// it, and what it changed. Names linked to one another share it.
type inode struct {
	created          bool
	data, meta, xatt bool
}

// model replays the commands of a stream.
type model struct {
	root *entry
	all  []*entry // every entry materialized, in order
}

func newModel(incremental bool) *model {
	root := &entry{existed: incremental, live: true, ino: &inode{created: !incremental}}
	return &model{root: root, all: []*entry{root}}
}

// resolve finds the entry at path in the tree as the stream has it so far,
// materializing entries of the parent snapshot on the way.
func (m *model) resolve(path string) (*entry, error) {
	e := m.root
	if path == "" {
		return e, nil
	}
	for _, name := range strings.Split(path, "/") {
		if c := e.children[name]; c != nil {
			e = c
			continue
		}
		if !e.existed || e.gone[name] {
			return nil, fmt.Errorf("the stream names %q, which does not exist at that point", path)
		}
		c := &entry{name: name, parent: e, existed: true, origName: name, origParent: e, live: true, ino: &inode{}}
		e.attach(c)
		m.all = append(m.all, c)
		e = c
	}
	return e, nil
}

func (e *entry) attach(c *entry) {
	if e.children == nil {
		e.children = map[string]*entry{}
	}
	e.children[c.name] = c
	c.parent = e
}

// detach takes e out of its directory.
func (e *entry) detach() {
	p := e.parent
	delete(p.children, e.name)
	if p.existed {
		if p.gone == nil {
			p.gone = map[string]bool{}
		}
		p.gone[e.name] = true
	}
	e.parent = nil
}

// dirAndName splits a stream path.
func dirAndName(path string) (string, string) {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i], path[i+1:]
	}
	return "", path
}

// create adds a new name at path for ino.
func (m *model) create(path string, ino *inode) error {
	dir, name := dirAndName(path)
	d, err := m.resolve(dir)
	if err != nil {
		return err
	}
	if d.children[name] != nil {
		return fmt.Errorf("the stream creates %q, which exists", path)
	}
	c := &entry{name: name, live: true, ino: ino}
	d.attach(c)
	m.all = append(m.all, c)
	return nil
}

// apply replays one command.
func (m *model) apply(c *sendgen.Command) error {
	path := string(c.Attr(sendgen.AttrPath))
	switch c.Cmd {
	case sendgen.CmdSubvol, sendgen.CmdSnapshot, sendgen.CmdEnd:
		return nil
	case sendgen.CmdMkfile, sendgen.CmdMkdir, sendgen.CmdMknod, sendgen.CmdMkfifo,
		sendgen.CmdMksock, sendgen.CmdSymlink:
		return m.create(path, &inode{created: true})
	case sendgen.CmdLink:
		target, err := m.resolve(string(c.Attr(sendgen.AttrPathLink)))
		if err != nil {
			return err
		}
		return m.create(path, target.ino)
	case sendgen.CmdRename:
		e, err := m.resolve(path)
		if err != nil {
			return err
		}
		dir, name := dirAndName(string(c.Attr(sendgen.AttrPathTo)))
		d, err := m.resolve(dir)
		if err != nil {
			return err
		}
		e.detach()
		e.name = name
		d.attach(e)
		return nil
	case sendgen.CmdUnlink, sendgen.CmdRmdir:
		e, err := m.resolve(path)
		if err != nil {
			return err
		}
		e.detach()
		e.live = false
		return nil
	}
	e, err := m.resolve(path)
	if err != nil {
		return err
	}
	switch c.Cmd {
	case sendgen.CmdWrite, sendgen.CmdClone, sendgen.CmdTruncate, sendgen.CmdUpdateExtent,
		sendgen.CmdFallocate, sendgen.CmdEncodedWrite:
		e.ino.data = true
	case sendgen.CmdSetXattr, sendgen.CmdRemoveXattr:
		e.ino.meta, e.ino.xatt = true, true
	default: // chmod, chown, utimes, fileattr, verity
		e.ino.meta = true
	}
	return nil
}

// path is where e is now; "" for the root.
func (e *entry) path() string {
	return e.pathBy(func(e *entry) (*entry, string) { return e.parent, e.name })
}

// origPath is where e was in the parent snapshot.
func (e *entry) origPath() string {
	return e.pathBy(func(e *entry) (*entry, string) { return e.origParent, e.origName })
}

// pathBy joins the names up to the root, following up.
func (e *entry) pathBy(up func(*entry) (*entry, string)) string {
	var parts []string
	for p, name := up(e); p != nil; p, name = up(p) {
		parts = append(parts, name)
	}
	slices.Reverse(parts)
	return strings.Join(parts, "/")
}

// Compute lists what changed from the stream's parent to its child (for a
// full stream, everything is added), sorted by path.
func Compute(ctx context.Context, s *sendgen.Stream) ([]Change, error) {
	child, parent := s.Subvolumes()
	m := newModel(parent != nil)
	var applyErr error
	err := s.Commands(ctx, func(c *sendgen.Command) error {
		applyErr = m.apply(c)
		return applyErr
	})
	if applyErr != nil {
		return nil, fmt.Errorf("internal error replaying the stream: %w", applyErr)
	}
	if err != nil {
		return nil, err
	}
	names := map[*inode][]*entry{}
	var inodes []*inode
	for _, e := range m.all {
		if names[e.ino] == nil {
			inodes = append(inodes, e.ino)
		}
		names[e.ino] = append(names[e.ino], e)
	}
	var out []Change
	changed := map[uint64]int{} // inode number -> index in out of its Modified or Metadata
	for _, ino := range inodes {
		chs, err := classify(ino, names[ino], child, parent)
		if err != nil {
			return nil, err
		}
		for _, ch := range chs {
			// Two names of one hard-linked inode, touched by different
			// commands, are one change: modified wins over metadata.
			if i, seen := changed[ch.ino]; seen && (ch.Kind == Modified || ch.Kind == Metadata) {
				if ch.Kind == Modified {
					out[i] = ch
				}
				continue
			}
			if ch.Kind == Modified || ch.Kind == Metadata {
				changed[ch.ino] = len(out)
			}
			out = append(out, ch)
		}
	}
	for i := range out {
		if out[i].Path == "" {
			out[i].Path = "."
		}
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// classify turns what the stream did to an inode into changes: its names
// added and deleted, or its one name renamed, and its data or metadata
// modified.
func classify(ino *inode, names []*entry, child, parent *btrfsread.Subvolume) ([]Change, error) {
	var out []Change
	var before, after []*entry // names in the parent; names in the child
	for _, e := range names {
		if e.existed {
			before = append(before, e)
		}
		if e.live {
			after = append(after, e)
		}
	}
	add := func(k Kind, sv *btrfsread.Subvolume, path string) error {
		_, in, err := inodeAt(sv, path)
		ch := Change{Kind: k, Path: path}
		ch.Type, ch.Size = describe(in)
		out = append(out, ch)
		return err
	}
	if ino.created {
		for _, e := range after {
			if err := add(Added, child, e.path()); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if len(after) == 0 { // every name deleted
		for _, e := range before {
			if err := add(Deleted, parent, e.origPath()); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	_, was, err := inodeAt(parent, before[0].origPath())
	if err != nil {
		return nil, err
	}
	num, now, err := inodeAt(child, after[0].path())
	if err != nil {
		return nil, err
	}
	ch := Change{Path: after[0].path(), Data: ino.data, ino: num}
	ch.Type, ch.Size = describe(now)
	if ino.data {
		_, ch.OldSize = describe(was)
	}
	ch.Meta = metaChanges(was, now, ino.xatt, ino.data)
	if len(before) == 1 && len(after) == 1 && was.Nlink == 1 && now.Nlink == 1 {
		// One name before and after: a rename when it moved or changed name
		// (by RENAME, or by LINK then UNLINK).
		if b, a := before[0], after[0]; b != a || a.parent != a.origParent || a.name != a.origName {
			ch.Kind, ch.From = Renamed, b.origPath()
			return append(out, ch), nil
		}
	} else { // hard links: names come and go
		for _, e := range names {
			moved := e.existed && e.live && (e.parent != e.origParent || e.name != e.origName)
			if e.existed && (!e.live || moved) {
				if err := add(Deleted, parent, e.origPath()); err != nil {
					return nil, err
				}
			}
			if e.live && (!e.existed || moved) {
				if err := add(Added, child, e.path()); err != nil {
					return nil, err
				}
			}
		}
	}
	switch {
	case ino.data:
		ch.Kind = Modified
	case len(ch.Meta) > 0:
		ch.Kind = Metadata
	default: // times of a directory whose entries changed, or ctime only
		return out, nil
	}
	return append(out, ch), nil
}

// metaChanges names what differs between two states of an inode. The mtime
// of a directory follows its entries and that of a rewritten file its data:
// neither is counted.
func metaChanges(was, now btrfsread.InodeItem, xattrs, data bool) []string {
	var out []string
	if was.Mode != now.Mode {
		out = append(out, "mode")
	}
	if was.UID != now.UID || was.GID != now.GID {
		out = append(out, "owner")
	}
	if was.Mtime != now.Mtime && now.Mode&typeMask != typeDir && !data {
		out = append(out, "mtime")
	}
	if xattrs {
		out = append(out, "xattrs")
	}
	return out
}

func inodeAt(sv *btrfsread.Subvolume, path string) (uint64, btrfsread.InodeItem, error) {
	ino, err := sv.Lookup(path)
	if err != nil {
		return 0, btrfsread.InodeItem{}, err
	}
	in, err := sv.Inode(ino)
	return ino, in, err
}

const (
	typeMask = 0o170000
	typeDir  = 0o040000
	typeReg  = 0o100000
	typeLnk  = 0o120000
)

// describe names an inode's type, and gives its size for files and links.
func describe(in btrfsread.InodeItem) (string, *uint64) {
	size := in.Size
	switch in.Mode & typeMask {
	case typeReg:
		return "file", &size
	case typeLnk:
		return "symlink", &size
	case typeDir:
		return "dir", nil
	case 0o010000:
		return "fifo", nil
	case 0o140000:
		return "socket", nil
	case 0o020000:
		return "char", nil
	case 0o060000:
		return "block", nil
	}
	return "unknown", nil
}
