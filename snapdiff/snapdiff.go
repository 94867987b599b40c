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
	data, meta bool
	xattrs     bool
}

// model replays the commands of a stream.
type model struct {
	root *entry
	all  []*entry // every entry materialized, in order
}

func newModel(incremental bool) *model {
	root := &entry{existed: incremental, live: true}
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
		c := &entry{name: name, parent: e, existed: true, origName: name, origParent: e, live: true}
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

// create adds a new entry at path.
func (m *model) create(path string) error {
	dir, name := dirAndName(path)
	d, err := m.resolve(dir)
	if err != nil {
		return err
	}
	if d.children[name] != nil {
		return fmt.Errorf("the stream creates %q, which exists", path)
	}
	c := &entry{name: name, live: true}
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
		sendgen.CmdMksock, sendgen.CmdSymlink, sendgen.CmdLink:
		return m.create(path)
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
		e.data = true
	case sendgen.CmdSetXattr, sendgen.CmdRemoveXattr:
		e.meta, e.xattrs = true, true
	default: // chmod, chown, utimes, fileattr, verity
		e.meta = true
	}
	return nil
}

// path is where e is now; "" for the root.
func (e *entry) path() string {
	var parts []string
	for ; e.parent != nil; e = e.parent {
		parts = append(parts, e.name)
	}
	slices.Reverse(parts)
	return strings.Join(parts, "/")
}

// origPath is where e was in the parent snapshot.
func (e *entry) origPath() string {
	var parts []string
	for ; e.origParent != nil; e = e.origParent {
		parts = append(parts, e.origName)
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
		if applyErr = m.apply(c); applyErr != nil {
			return applyErr
		}
		return nil
	})
	if applyErr != nil {
		return nil, fmt.Errorf("internal error replaying the stream: %w", applyErr)
	}
	if err != nil {
		return nil, err
	}
	var out []Change
	for _, e := range m.all {
		ch, ok, err := classify(e, child, parent)
		if err != nil {
			return nil, err
		}
		if ok {
			if ch.Path == "" {
				ch.Path = "."
			}
			out = append(out, ch)
		}
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// classify turns an entry into its change, if it changed.
func classify(e *entry, child, parent *btrfsread.Subvolume) (Change, bool, error) {
	switch {
	case !e.existed && !e.live: // created and removed by the stream (orphans)
		return Change{}, false, nil
	case !e.existed:
		ch := Change{Kind: Added, Path: e.path()}
		in, err := inodeAt(child, ch.Path)
		ch.Type, ch.Size = describe(in)
		return ch, true, err
	case !e.live:
		ch := Change{Kind: Deleted, Path: e.origPath()}
		in, err := inodeAt(parent, ch.Path)
		ch.Type, ch.Size = describe(in)
		return ch, true, err
	}
	ch := Change{Path: e.path(), Data: e.data}
	renamed := e.parent != e.origParent || e.name != e.origName
	if !renamed && !e.data && !e.meta {
		return Change{}, false, nil
	}
	now, err := inodeAt(child, ch.Path)
	if err != nil {
		return ch, false, err
	}
	was, err := inodeAt(parent, e.origPath())
	if err != nil {
		return ch, false, err
	}
	ch.Type, ch.Size = describe(now)
	if e.data {
		_, ch.OldSize = describe(was)
	}
	ch.Meta = metaChanges(was, now, e.xattrs, e.data)
	switch {
	case renamed:
		ch.Kind, ch.From = Renamed, e.origPath()
	case e.data:
		ch.Kind = Modified
	case len(ch.Meta) > 0:
		ch.Kind = Metadata
	default: // times of a directory whose entries changed, or ctime only
		return Change{}, false, nil
	}
	return ch, true, nil
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

func inodeAt(sv *btrfsread.Subvolume, path string) (btrfsread.InodeItem, error) {
	ino, err := sv.Lookup(path)
	if err != nil {
		return btrfsread.InodeItem{}, err
	}
	return sv.Inode(ino)
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
