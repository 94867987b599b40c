package sendgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"sendfs/btrfsread"
)

// The send engine follows the kernel's fs/btrfs/send.c (6.x): inodes are
// processed in ascending number; for each one the stream creates it under an
// orphan name, moves or links it to its names, then sends xattrs, data,
// ownership, mode and times. In an incremental send the same steps are driven
// by the differences between the child (send) and parent trees, with the
// kernel's rules for orphanization, delayed directory moves and rmdir order.

// sendCtx is the state of one engine run. Names follow the kernel's
// send_ctx so the two can be read side by side.
type sendCtx struct {
	ctx    context.Context
	out    emitter
	opts   Options
	send   *btrfsread.Subvolume
	parent *btrfsread.Subvolume   // nil for a full send
	roots  []*btrfsread.Subvolume // clone roots, once known (cloneRoots)
	// walked holds the data extents of the file extent items a full send
	// with no clone root but its own has walked past (findExtentClone).
	walked extentFilter
	cmd    Command
	// inodes holds the inode items read so far (shared with ns).
	inodes *inodeCache
	// rootNames tells which orphan names are free (orphanName).
	rootNames rootNames

	sectorSize uint64

	// The inode being processed (values of the deleted inode when
	// curDeleted).
	curIno, curGen     uint64
	curSize, curMode   uint64
	curRdev            uint64
	curNew, curNewGen  bool
	curDeleted, ignore bool
	curLastExtent      uint64 // end of the last extent seen; unknownOffset when unknown
	curNextWriteOffset uint64
	// curInodePath caches the current inode's path (nil: not known).
	curInodePath []byte
	// curXattrs: an xattr item of the current inode was reported.
	curXattrs bool
	// curOrphanized holds the inodes the current inode's new names have
	// orphanized so far: until then they still stand under their old
	// names, although the send tree gives those names to the current inode.
	curOrphanized map[inoGen]bool

	// sendProgress: the receiver has processed every inode below it.
	sendProgress uint64

	newRefs, deletedRefs refList

	pendingDirMoves map[uint64][]*pendingDirMove // by parent inode
	waitingDirMoves map[uint64]*waitingDirMove   // by inode
	orphanDirs      map[inoGen]*orphanDirInfo

	dirUtimes utimesCache

	// ns is the receiver's namespace every command is checked against;
	// expect maps the paths computed while processing the current inode to
	// the inodes they name.
	ns     *namespace
	expect map[string]inoGen

	// pastKernel is set once the stream leaves the kernel's, where the
	// kernel's own send fails or its stream would not rebuild the snapshot.
	pastKernel bool
}

const unknownOffset = ^uint64(0)

// inoGen identifies an inode across both trees: inode numbers are reused
// with a new generation.
type inoGen struct{ ino, gen uint64 }

// run is the engine entry point (see the emitter contract).
func run(ctx context.Context, child, parent *btrfsread.Subvolume, opts Options, out emitter) error {
	inodes := &inodeCache{}
	s := &sendCtx{
		inodes:          inodes,
		ctx:             ctx,
		out:             out,
		opts:            opts,
		send:            child,
		parent:          parent,
		sectorSize:      uint64(child.FS().Info().SectorSize),
		pendingDirMoves: map[uint64][]*pendingDirMove{},
		waitingDirMoves: map[uint64]*waitingDirMove{},
		orphanDirs:      map[inoGen]*orphanDirInfo{},
		curOrphanized:   map[inoGen]bool{},
		ns:              newNamespace(child, parent, inodes),
		expect:          map[string]inoGen{},
	}
	s.dirUtimes.init()
	if err := s.sendSubvolBegin(); err != nil {
		return err
	}
	var err error
	if parent == nil {
		err = s.fullSend()
	} else {
		err = s.incrementalSend()
	}
	if err != nil {
		return err
	}
	if err := s.finishInode(true, btrfsread.Key{}); err != nil {
		return err
	}
	if len(s.pendingDirMoves) > 0 || len(s.waitingDirMoves) > 0 || len(s.orphanDirs) > 0 {
		return fmt.Errorf("send engine left %d pending directory moves, %d waiting moves and %d orphan directories: the stream would not rebuild the snapshot",
			len(s.pendingDirMoves), len(s.waitingDirMoves), len(s.orphanDirs))
	}
	if err := s.flushDirUtimes(); err != nil {
		return err
	}
	if s.pastKernel {
		// The kernel's streams can leave the root directory with the
		// time of the last rename into it; a stream that differs from
		// the kernel's anyway sets it last.
		if err := s.sendUtimes(btrfsread.FirstFreeObjectID, 0); err != nil {
			return err
		}
	}
	s.begin(CmdEnd)
	return s.emit()
}

// fullSend feeds every item of the send tree, from the root directory on, as
// new.
func (s *sendCtx) fullSend() error {
	if len(s.cloneRoots()) == 1 {
		s.walked = newExtentFilter()
	}
	from := btrfsread.Key{ObjectID: btrfsread.FirstFreeObjectID, Type: btrfsread.InodeItemKey}
	return s.send.Tree().Walk(from, btrfsread.MaxKey, func(it btrfsread.Item) error {
		if err := s.changed(btrfsread.Change{Kind: btrfsread.Added, Key: it.Key, Left: it.Data}); err != nil {
			return err
		}
		return s.walked.addItem(it)
	})
}

// incrementalSend feeds the differences between the send and parent trees.
func (s *sendCtx) incrementalSend() error {
	return btrfsread.CompareTrees(s.send.Tree(), s.parent.Tree(), s.changed)
}

// changed dispatches one reported item (the kernel's changed_cb).
func (s *sendCtx) changed(c btrfsread.Change) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	k := c.Key
	if c.Kind == btrfsread.Same {
		switch k.Type {
		case btrfsread.InodeRefKey, btrfsread.InodeExtrefKey:
			if k.ObjectID == btrfsread.FirstFreeObjectID {
				return nil // the root directory's refs are never sent
			}
			changed, err := s.refDirsChanged(k, c.Left)
			if err != nil || !changed {
				return err
			}
			c.Kind = btrfsread.Changed
		case btrfsread.ExtentDataKey:
			if k.ObjectID != s.curIno || s.ignore {
				return nil
			}
			fe, err := btrfsread.ParseFileExtent(c.Left)
			if err != nil {
				return err
			}
			return s.maybeSendHole(k, &fe)
		default:
			return nil
		}
	}
	if err := s.finishInode(false, k); err != nil {
		return err
	}
	if k.ObjectID == btrfsread.FreeInoObjectID || k.ObjectID == btrfsread.FreeSpaceObjectID {
		return nil
	}
	if k.ObjectID < btrfsread.FirstFreeObjectID || k.ObjectID > btrfsread.LastFreeObjectID {
		return nil
	}
	if k.Type == btrfsread.InodeItemKey {
		return s.changedInode(c)
	}
	if s.ignore || s.curIno == 0 {
		return nil
	}
	if k.ObjectID != s.curIno {
		if k.Type == btrfsread.ExtentDataKey {
			// An extent changed without its inode item (dedupe,
			// relocation): nothing to send, as the kernel does.
			return nil
		}
		switch k.Type {
		case btrfsread.InodeRefKey, btrfsread.InodeExtrefKey, btrfsread.XattrItemKey:
			return fmt.Errorf("inconsistent snapshot: item %v of inode %d changed without its inode item", k, k.ObjectID)
		}
		return nil
	}
	switch k.Type {
	case btrfsread.InodeRefKey, btrfsread.InodeExtrefKey:
		return s.changedRef(c)
	case btrfsread.XattrItemKey:
		s.curXattrs = true
		return s.changedXattr(c)
	case btrfsread.ExtentDataKey:
		return s.changedExtent(c)
	}
	return nil
}

// refDirsChanged reports whether a ref item that is byte-identical in both
// trees names a directory whose generation differs between them (deleted and
// recreated with the same number): then its refs must be treated as changed.
func (s *sendCtx) refDirsChanged(k btrfsread.Key, data []byte) (bool, error) {
	refs, err := btrfsread.ParseInodeRefs(k, data)
	if err != nil {
		return false, err
	}
	for _, dir := range parentDirs(refs) {
		newGen, err := s.inodes.gen(s.send, dir)
		if err != nil {
			return false, err
		}
		oldGen, err := s.inodes.gen(s.parent, dir)
		if err != nil {
			return false, err
		}
		if newGen != oldGen {
			return true, nil
		}
	}
	return false, nil
}

// changedInode starts a new current inode (the kernel's changed_inode).
func (s *sendCtx) changedInode(c btrfsread.Change) error {
	s.curIno = c.Key.ObjectID
	s.curNewGen = false
	s.curLastExtent = unknownOffset
	s.curNextWriteOffset = 0
	s.ignore = false
	s.curInodePath = nil
	s.curXattrs = false
	clear(s.curOrphanized)
	clear(s.expect)
	s.sendProgress = s.curIno

	var left, right btrfsread.InodeItem
	var err error
	if c.Left != nil {
		if left, err = btrfsread.ParseInodeItem(c.Left); err != nil {
			return err
		}
	}
	if c.Right != nil {
		if right, err = btrfsread.ParseInodeItem(c.Right); err != nil {
			return err
		}
	}
	// The items in hand are the ones the rest of the inode's work asks for.
	s.inodes.put(s.send, s.curIno, left, c.Left != nil)
	s.inodes.put(s.parent, s.curIno, right, c.Right != nil)
	setFrom := func(ii *btrfsread.InodeItem, isNew bool) {
		s.curGen = ii.Generation
		s.curNew = isNew
		s.curDeleted = !isNew
		s.curSize = ii.Size
		s.curMode = uint64(ii.Mode)
		s.curRdev = ii.Rdev
	}
	switch c.Kind {
	case btrfsread.Added:
		if left.Nlink == 0 {
			s.ignore = true
			return nil
		}
		setFrom(&left, true)
		if s.curIno != btrfsread.FirstFreeObjectID {
			return s.createInodeIfNeeded()
		}
		return nil
	case btrfsread.Deleted:
		setFrom(&right, false)
		return nil
	}
	// Changed.
	if left.Nlink == 0 && right.Nlink == 0 {
		s.ignore = true
		return nil
	}
	if (left.Generation != right.Generation && s.curIno != btrfsread.FirstFreeObjectID) ||
		left.Nlink == 0 || right.Nlink == 0 {
		s.curNewGen = true
	}
	if !s.curNewGen {
		setFrom(&left, false)
		s.curDeleted = false
		return nil
	}
	// The inode number was reused: delete the old inode, then create the
	// new one with all its refs, data and xattrs at once.
	if right.Nlink > 0 {
		setFrom(&right, false)
		if err := s.processAllRefs(s.parent, false); err != nil {
			return err
		}
	}
	if left.Nlink > 0 {
		setFrom(&left, true)
		if err := s.createInodeIfNeeded(); err != nil {
			return err
		}
		if err := s.processAllRefs(s.send, true); err != nil {
			return err
		}
		s.sendProgress = s.curIno + 1
		if err := s.processAllExtents(); err != nil {
			return err
		}
		return s.processAllNewXattrs()
	}
	return nil
}

// finishInode completes the current inode once the compare has moved past
// it, or at the end (the kernel's finish_inode_if_needed). next is the key
// about to be processed.
func (s *sendCtx) finishInode(atEnd bool, next btrfsread.Key) error {
	if err := s.finishInodeBody(atEnd, next); err != nil {
		return err
	}
	return s.trimDirUtimes()
}

func (s *sendCtx) finishInodeBody(atEnd bool, next btrfsread.Key) error {
	if s.ignore || s.curIno == 0 {
		return nil
	}
	pendingMove, refsProcessed := false, false
	if (atEnd || s.curIno != next.ObjectID || next.Type > btrfsread.InodeExtrefKey) &&
		(s.newRefs.len() > 0 || s.deletedRefs.len() > 0) {
		var err error
		if pendingMove, err = s.processRecordedRefs(); err != nil {
			return err
		}
		refsProcessed = true
	}
	if refsProcessed && !pendingMove {
		s.sendProgress = s.curIno + 1
	}
	if s.curDeleted {
		return nil
	}
	if !atEnd && next.ObjectID == s.curIno {
		return nil
	}
	left, err := s.inodes.item(s.send, s.curIno)
	if err != nil {
		return err
	}
	isLink := isSymlink(s.curMode)
	needChown, needChmod, needFileattr, needTruncate := false, false, false, true
	if s.parent == nil || s.curNew {
		needChown = true
		needChmod = !isLink
		if s.curNextWriteOffset == s.curSize {
			needTruncate = false
		}
	} else {
		right, err := s.inodes.item(s.parent, s.curIno)
		if err != nil {
			return err
		}
		if isRegular(s.curMode) && s.curSize > right.Size {
			if err := s.sendGrownTail(right.Size); err != nil {
				return err
			}
		}
		needChown = left.UID != right.UID || left.GID != right.GID
		needChmod = !isLink && left.Mode != right.Mode
		needFileattr = !isLink && left.Flags != right.Flags
		if right.Size == s.curSize || (s.curSize > right.Size && s.curNextWriteOffset == s.curSize) {
			needTruncate = false
		}
	}
	if isRegular(s.curMode) {
		if err := s.sendTrailingHole(); err != nil {
			return err
		}
		if needTruncate {
			if err := s.sendTruncate(s.curIno, s.curGen, s.curSize); err != nil {
				return err
			}
		}
	}
	if needChown {
		if err := s.sendChown(s.curIno, s.curGen, left.UID, left.GID); err != nil {
			return err
		}
	}
	if needChmod {
		if err := s.sendChmod(s.curIno, s.curGen, left.Mode); err != nil {
			return err
		}
	}
	if needFileattr {
		if err := s.sendFileattr(s.curIno, s.curGen, left.Flags); err != nil {
			return err
		}
	}
	if err := s.sendCapabilities(); err != nil {
		return err
	}
	if _, waiting := s.waitingDirMoves[s.curIno]; waiting {
		return nil
	}
	if err := s.applyChildrenDirMoves(); err != nil {
		return err
	}
	s.sendProgress = s.curIno + 1
	if isDir(s.curMode) && s.curSize > 0 {
		return s.cacheDirUtimes(s.curIno, s.curGen)
	}
	return s.sendUtimes(s.curIno, s.curGen)
}

// needSendHole: holes are only sent for regular files that already exist at
// the receiver.
func (s *sendCtx) needSendHole() bool {
	return s.parent != nil && !s.curNew && !s.curNewGen && !s.curDeleted && isRegular(s.curMode)
}

// sendSubvolBegin emits SUBVOL or SNAPSHOT with the identities the receiver
// looks the parent up by.
func (s *sendCtx) sendSubvolBegin() error {
	name := []byte(s.send.Name)
	if s.send.ID == btrfsread.FSTreeID || len(name) == 0 {
		return fmt.Errorf("subvolume %d has no name to send it under (the top-level subvolume cannot be sent)", s.send.ID)
	}
	if s.parent == nil {
		s.begin(CmdSubvol)
	} else {
		s.begin(CmdSnapshot)
	}
	c := &s.cmd
	c.Bytes(AttrPath, name)
	c.UUID(AttrUUID, streamUUID(&s.send.Root))
	c.U64(AttrCtransid, s.send.Root.CTransid)
	if s.parent != nil {
		c.UUID(AttrCloneUUID, streamUUID(&s.parent.Root))
		c.U64(AttrCloneCtransid, s.parent.Root.CTransid)
	}
	return s.emit()
}

// streamUUID is the identity a subvolume has for receivers: its
// received_uuid when it was itself received, else its uuid.
func streamUUID(r *btrfsread.RootItem) btrfsread.UUID {
	if !r.ReceivedUUID.IsZero() {
		return r.ReceivedUUID
	}
	return r.UUID
}

func (s *sendCtx) begin(cmd Cmd) *Command {
	s.cmd.Reset(cmd)
	return &s.cmd
}

// emit checks the command against the receiver's namespace and hands it
// to the output, unless one of its attributes is too long to encode: then
// the send fails naming the inode being sent (the kernel fails it with
// ENAMETOOLONG).
func (s *sendCtx) emit() error {
	if err := s.cmd.Err(); err != nil {
		return fmt.Errorf("cannot send inode %d: %w", s.curIno, err)
	}
	if err := s.ns.apply(&s.cmd, s.expect); err != nil {
		return err
	}
	return s.out.emit(&s.cmd)
}

// expectPath notes that path names (ino, gen) at the receiver now.
func (s *sendCtx) expectPath(path []byte, ino, gen uint64) {
	id := inoGen{ino, gen}
	if cur, ok := s.expect[string(path)]; !ok || cur != id { // most are repeats: no key to copy
		s.expect[string(path)] = id
	}
}

// File type helpers on st_mode.
const (
	sIFMT   = 0o170000
	sIFSOCK = 0o140000
	sIFLNK  = 0o120000
	sIFREG  = 0o100000
	sIFBLK  = 0o060000
	sIFDIR  = 0o040000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000
)

func isDir(mode uint64) bool     { return mode&sIFMT == sIFDIR }
func isRegular(mode uint64) bool { return mode&sIFMT == sIFREG }
func isSymlink(mode uint64) bool { return mode&sIFMT == sIFLNK }

// notFound reports whether err says an item does not exist.
func notFound(err error) bool { return errors.Is(err, btrfsread.ErrNotFound) }

// joinPath appends name to dir with a '/' unless dir is the subvolume root
// (the empty path).
func joinPath(dir, name []byte) []byte {
	p := make([]byte, 0, len(dir)+1+len(name))
	p = append(p, dir...)
	if len(dir) > 0 {
		p = append(p, '/')
	}
	return append(p, name...)
}

// isUnder reports whether path p lies inside directory path dir.
func isUnder(p, dir []byte) bool {
	return len(p) > len(dir) && p[len(dir)] == '/' && bytes.HasPrefix(p, dir)
}

// baseName returns the last component of p.
func baseName(p []byte) []byte {
	if i := bytes.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
