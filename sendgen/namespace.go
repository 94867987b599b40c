package sendgen

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"sendfs/btrfsread"
)

// The receiver's namespace, tracked while the stream is generated: every
// command that names a path is checked against what a receiver applying the
// stream so far would have, and a command that could not be applied, or that
// would act on another inode than the engine means, stops the send with an
// error instead of reaching the output. The model starts as the parent
// snapshot (nothing but the root for a full send) and records only what the
// stream changes: untouched directories are read from the parent tree on
// demand, so its cost follows the stream, not the subvolume.

// nsObj is one inode at the receiver. id is the inode it stands for in the
// send engine (number and generation; the parent's for inodes of the parent
// snapshot not recreated since). A full send holds one per inode until it
// ends, so what only directories need is apart: a file costs 24 bytes.
type nsObj struct {
	id  inoGen
	dir *nsDir // nil: not a directory
}

// nsDir is what the namespace knows of a directory's entries.
type nsDir struct {
	// fromParent: a directory of the parent snapshot, whose entries not in
	// kids are those of the parent tree.
	fromParent bool
	// kids are the entries the stream added (non-nil) or removed (nil).
	kids map[string]*nsObj
	// count is the number of entries, once known (baseKnown).
	count     int
	baseKnown bool
}

// namespace is the receiver's tree as the stream has built it so far.
type namespace struct {
	parent *btrfsread.Subvolume // nil for a full send
	send   *btrfsread.Subvolume
	inodes *inodeCache // the engine's
	root   *nsObj
	// objs holds the objects of parent-tree inodes met so far, by number:
	// a hard-linked file reached by two names is one object.
	objs map[uint64]*nsObj
	// sendUUID is the identity under which clone sources in the stream's
	// own subvolume are named.
	sendUUID btrfsread.UUID
	// dirs caches the directories met by path.
	dirs map[string]*nsObj
	// last is the path resolved last and what it reached, until the
	// namespace changes: the commands after an inode's create or rename
	// (write, chown, chmod, utimes, ...) all name the same path.
	last    []byte
	lastObj *nsObj // nil: last holds nothing
}

func newNamespace(send, parent *btrfsread.Subvolume, inodes *inodeCache) *namespace {
	ns := &namespace{parent: parent, send: send, inodes: inodes, objs: map[uint64]*nsObj{}, dirs: map[string]*nsObj{}, sendUUID: streamUUID(&send.Root)}
	ns.root = &nsObj{id: inoGen{btrfsread.FirstFreeObjectID, 0}, dir: &nsDir{fromParent: parent != nil, baseKnown: parent == nil}}
	if parent != nil {
		ns.objs[btrfsread.FirstFreeObjectID] = ns.root
	}
	return ns
}

// errStream is the one error of a failed check: the stream would not apply,
// which is a bug of the engine caught before the command is written.
func errStream(c *Command, path []byte, problem string) error {
	return fmt.Errorf("send engine bug caught before writing the stream: %s %q %s", cmdName(c.Cmd), path, problem)
}

func cmdName(c Cmd) string {
	names := map[Cmd]string{
		CmdMkfile: "mkfile", CmdMkdir: "mkdir", CmdMknod: "mknod", CmdMkfifo: "mkfifo", CmdMksock: "mksock",
		CmdSymlink: "symlink", CmdRename: "rename", CmdLink: "link", CmdUnlink: "unlink", CmdRmdir: "rmdir",
		CmdSetXattr: "set_xattr", CmdRemoveXattr: "remove_xattr", CmdWrite: "write", CmdClone: "clone",
		CmdTruncate: "truncate", CmdChmod: "chmod", CmdChown: "chown", CmdUtimes: "utimes",
		CmdUpdateExtent: "update_extent", CmdFallocate: "fallocate", CmdFileattr: "fileattr",
		CmdEncodedWrite: "encoded_write", CmdEnableVerity: "enable_verity",
	}
	if n, ok := names[c]; ok {
		return n
	}
	return fmt.Sprintf("command %d", c)
}

// attr returns the value of attribute a of c (the first one), or nil.
func (c *Command) attr(a Attr) []byte {
	b := c.Attrs
	for len(b) >= 4 {
		t, n := Attr(binary.LittleEndian.Uint16(b)), int(binary.LittleEndian.Uint16(b[2:]))
		if len(b) < 4+n {
			return nil
		}
		if t == a {
			return b[4 : 4+n]
		}
		b = b[4+n:]
	}
	return nil
}

// splitPath returns the directory part and the last name of p.
func splitPath(p []byte) (dir, name []byte) {
	if i := bytes.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return nil, p
}

// parentObj returns the object of parent-tree inode ino.
func (ns *namespace) parentObj(ino uint64) (*nsObj, error) {
	if o := ns.objs[ino]; o != nil {
		return o, nil
	}
	ii, err := ns.inodes.item(ns.parent, ino)
	if err != nil {
		return nil, err
	}
	o := &nsObj{id: inoGen{ino, ii.Generation}}
	if isDir(uint64(ii.Mode)) {
		o.dir = &nsDir{fromParent: true}
	}
	ns.objs[ino] = o
	return o, nil
}

// lookup returns the entry name of directory d, nil when there is none.
func (ns *namespace) lookup(d *nsObj, name []byte) (*nsObj, error) {
	if o, ok := d.dir.kids[string(name)]; ok {
		return o, nil
	}
	if !d.dir.fromParent {
		return nil, nil
	}
	di, err := ns.parent.LookupName(d.id.ino, name)
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if di.Location.Type == btrfsread.RootItemKey {
		// A nested subvolume is not part of the stream of the parent:
		// the receiver has no such entry.
		return nil, nil
	}
	return ns.parentObj(di.Location.ObjectID)
}

// setKid records an entry of d without changing its count.
func (d *nsDir) setKid(name []byte, o *nsObj) {
	if d.kids == nil {
		d.kids = map[string]*nsObj{}
	}
	d.kids[string(name)] = o
}

// resolve returns the inode at path p, nil when there is none.
func (ns *namespace) resolve(p []byte) (*nsObj, error) {
	if len(p) == 0 {
		return ns.root, nil
	}
	if ns.lastObj != nil && bytes.Equal(p, ns.last) {
		return ns.lastObj, nil
	}
	dirPath, name := splitPath(p)
	d, err := ns.dir(dirPath)
	if err != nil || d == nil {
		return nil, err
	}
	o, err := ns.lookup(d, name)
	if o != nil {
		ns.last, ns.lastObj = append(ns.last[:0], p...), o
	}
	return o, err
}

// dir returns the directory at path p, nil when there is none, through a
// cache of directory paths that holds until a directory moves or goes.
func (ns *namespace) dir(p []byte) (*nsObj, error) {
	if d, ok := ns.dirs[string(p)]; ok {
		return d, nil
	}
	o, err := ns.resolve(p)
	if err != nil {
		return nil, err
	}
	if o != nil && o.dir == nil {
		o = nil
	}
	if o != nil {
		ns.dirs[string(p)] = o
	}
	return o, nil
}

// entries returns the number of entries directory d has now.
func (ns *namespace) entries(o *nsObj) (int, error) {
	d := o.dir
	if !d.baseKnown {
		items, err := ns.parent.ReadDir(o.id.ino)
		if err != nil && !notFound(err) {
			return 0, err
		}
		for _, it := range items {
			if it.Location.Type != btrfsread.RootItemKey {
				d.count++
			}
		}
		d.baseKnown = true
	}
	return d.count, nil
}

// parentDir resolves the directory part of p, which must exist.
func (ns *namespace) parentDir(c *Command, p []byte) (d *nsObj, name []byte, err error) {
	dirPath, name := splitPath(p)
	if d, err = ns.dir(dirPath); err != nil {
		return nil, nil, err
	}
	if d == nil {
		return nil, nil, errStream(c, p, "names a directory that does not exist at the receiver")
	}
	if len(name) == 0 || bytes.Equal(name, []byte(".")) || bytes.Equal(name, []byte("..")) {
		return nil, nil, errStream(c, p, "has no valid last name")
	}
	return d, name, nil
}

// add enters o as name in d, which must not have that name yet.
func (ns *namespace) add(c *Command, p []byte, d *nsObj, name []byte, o *nsObj) error {
	cur, err := ns.lookup(d, name)
	if err != nil {
		return err
	}
	if cur != nil {
		return errStream(c, p, "would replace an existing entry at the receiver")
	}
	d.dir.setKid(name, o)
	d.dir.count++
	ns.lastObj = nil
	return nil
}

// remove drops the entry name of d, which is o; paths of directories
// cached through o no longer hold. Only a directory of the parent tree needs
// a nil entry to hide the parent's; in the others (every directory of a full
// send) the name goes, so that the orphan names every new inode passes
// through do not pile up in the root.
func (ns *namespace) remove(d *nsObj, name []byte, o *nsObj) {
	if d.dir.fromParent {
		d.dir.setKid(name, nil)
	} else {
		delete(d.dir.kids, string(name))
	}
	d.dir.count--
	ns.lastObj = nil
	if o.dir != nil {
		clear(ns.dirs)
	}
}

// existing resolves p, which must exist, and checks the inode the engine
// meant by it, if it said.
func (ns *namespace) existing(c *Command, p []byte, expect map[string]inoGen) (*nsObj, error) {
	o, err := ns.resolve(p)
	if err != nil {
		return nil, err
	}
	if o == nil {
		return nil, errStream(c, p, "names a path that does not exist at the receiver")
	}
	if id, ok := expect[string(p)]; ok && id.ino != btrfsread.FirstFreeObjectID && id != o.id {
		return nil, errStream(c, p, fmt.Sprintf("reaches inode %d (generation %d) at the receiver, not inode %d (generation %d)", o.id.ino, o.id.gen, id.ino, id.gen))
	}
	return o, nil
}

// forget drops the expectations about p and the paths under it, which a
// change of the namespace at p makes stale.
func forget(expect map[string]inoGen, p []byte) {
	for k := range expect {
		if k == string(p) || isUnder([]byte(k), p) {
			delete(expect, k)
		}
	}
}

// apply checks command c against the namespace and records its effect.
// expect maps the paths the engine computed for the inode being processed
// to the inodes they were computed for; those the command changes are
// dropped from it.
func (ns *namespace) apply(c *Command, expect map[string]inoGen) error {
	err := ns.check(c, expect)
	if err == nil && len(expect) > 0 {
		switch c.Cmd {
		case CmdRename:
			forget(expect, c.attr(AttrPath))
			forget(expect, c.attr(AttrPathTo))
		case CmdMkfile, CmdMkdir, CmdMknod, CmdMkfifo, CmdMksock, CmdSymlink, CmdLink, CmdUnlink, CmdRmdir:
			forget(expect, c.attr(AttrPath))
		}
	}
	return err
}

// check checks command c against the namespace and records its effect.
func (ns *namespace) check(c *Command, expect map[string]inoGen) error {
	p := c.attr(AttrPath)
	switch c.Cmd {
	case CmdSubvol, CmdSnapshot, CmdEnd:
		return nil
	case CmdMkfile, CmdMkdir, CmdMknod, CmdMkfifo, CmdMksock, CmdSymlink:
		d, name, err := ns.parentDir(c, p)
		if err != nil {
			return err
		}
		o := &nsObj{}
		if c.Cmd == CmdMkdir {
			o.dir = &nsDir{baseKnown: true}
		}
		if ino := c.attr(AttrIno); len(ino) == 8 {
			o.id.ino = binary.LittleEndian.Uint64(ino)
			ii, err := ns.inodes.item(ns.send, o.id.ino)
			if err != nil {
				return err
			}
			o.id.gen = ii.Generation
		}
		return ns.add(c, p, d, name, o)
	case CmdRename:
		o, err := ns.existing(c, p, expect)
		if err != nil {
			return err
		}
		to := c.attr(AttrPathTo)
		d, name, err := ns.parentDir(c, to)
		if err != nil {
			return err
		}
		// Paths at the receiver are canonical: a directory moved into
		// itself is one whose new path extends its old one.
		if o.dir != nil && isUnder(to, p) {
			return errStream(c, p, fmt.Sprintf("would move a directory into itself (%q)", to))
		}
		from, fromName, err := ns.parentDir(c, p)
		if err != nil {
			return err
		}
		if err := ns.add(c, to, d, name, o); err != nil {
			return err
		}
		ns.remove(from, fromName, o)
		return nil
	case CmdLink:
		target := c.attr(AttrPathLink)
		o, err := ns.existing(c, target, expect)
		if err != nil {
			return err
		}
		if o.dir != nil {
			return errStream(c, target, "would hard-link a directory")
		}
		d, name, err := ns.parentDir(c, p)
		if err != nil {
			return err
		}
		return ns.add(c, p, d, name, o)
	case CmdUnlink, CmdRmdir:
		o, err := ns.existing(c, p, expect)
		if err != nil {
			return err
		}
		if (o.dir != nil) != (c.Cmd == CmdRmdir) {
			return errStream(c, p, "names the wrong file type")
		}
		if o.dir != nil {
			n, err := ns.entries(o)
			if err != nil {
				return err
			}
			if n != 0 {
				return errStream(c, p, fmt.Sprintf("names a directory that still has %d entries at the receiver", n))
			}
		}
		d, name, err := ns.parentDir(c, p)
		if err != nil {
			return err
		}
		ns.remove(d, name, o)
		return nil
	case CmdClone:
		if src := c.attr(AttrCloneUUID); bytes.Equal(src, ns.sendUUID[:]) {
			if _, err := ns.existing(c, c.attr(AttrClonePath), expect); err != nil {
				return err
			}
		}
	}
	o, err := ns.existing(c, p, expect)
	if err != nil {
		return err
	}
	switch c.Cmd {
	case CmdWrite, CmdClone, CmdTruncate, CmdUpdateExtent, CmdFallocate, CmdEncodedWrite, CmdEnableVerity:
		if o.dir != nil {
			return errStream(c, p, "names a directory")
		}
	}
	return nil
}
