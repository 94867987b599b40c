package sendgen

import (
	"bytes"
	"fmt"

	"sendfs/btrfsread"
)

// recordedRef is one name of the current inode that appears only in the
// send tree (new) or only in the parent tree (deleted). path is the full path
// of the name, computed when it was recorded.
type recordedRef struct {
	dir, dirGen uint64
	path        []byte
}

func (r *recordedRef) name() []byte { return baseName(r.path) }

// refList keeps recorded refs in recording order with an index by
// (dir, dirGen, name) so that a name present on both sides cancels out.
type refList struct {
	refs  []*recordedRef // nil entries were cancelled
	index map[refID]int
	live  int
}

// refID is a ref's identity: directory, its generation, name.
type refID struct {
	dir, dirGen uint64
	name        string
}

func (l *refList) add(r *recordedRef) {
	if l.index == nil {
		l.index = map[refID]int{}
	}
	l.index[refID{r.dir, r.dirGen, string(r.name())}] = len(l.refs)
	l.refs = append(l.refs, r)
	l.live++
}

// remove drops the ref with that identity, reporting whether it existed.
func (l *refList) remove(dir, dirGen uint64, name []byte) bool {
	k := refID{dir, dirGen, string(name)}
	i, ok := l.index[k]
	if !ok {
		return false
	}
	delete(l.index, k)
	l.refs[i] = nil
	l.live--
	return true
}

func (l *refList) len() int { return l.live }

// all returns the live refs in recording order.
func (l *refList) all() []*recordedRef {
	out := make([]*recordedRef, 0, l.live)
	for _, r := range l.refs {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

// reset empties the list, keeping its storage for the next inode unless
// it grew large (clearing a map costs its capacity).
func (l *refList) reset() {
	if len(l.refs) > 64 {
		*l = refList{}
		return
	}
	clear(l.refs)
	l.refs = l.refs[:0]
	clear(l.index)
	l.live = 0
}

// recordRef records one name of the current inode from root: new names are
// from the send tree, deleted ones from the parent. A name recorded on the
// other side already cancels out.
func (s *sendCtx) recordRef(root *btrfsread.Subvolume, isNew bool, ref btrfsread.InodeRef) error {
	dirGen, err := s.inodes.gen(root, ref.Parent)
	if err != nil {
		return err
	}
	mine, other := &s.newRefs, &s.deletedRefs
	if !isNew {
		mine, other = other, mine
	}
	if other.remove(ref.Parent, dirGen, ref.Name) {
		return nil
	}
	dirPath, err := s.curPath(ref.Parent, dirGen)
	if err != nil {
		return err
	}
	mine.add(&recordedRef{dir: ref.Parent, dirGen: dirGen, path: joinPath(dirPath, ref.Name)})
	return nil
}

// changedRef records the names in a new, deleted or changed ref item.
func (s *sendCtx) changedRef(c btrfsread.Change) error {
	if s.curNewGen || s.curIno == btrfsread.FirstFreeObjectID {
		return nil
	}
	for _, side := range []struct {
		item  []byte
		root  *btrfsread.Subvolume
		isNew bool
	}{{c.Left, s.send, true}, {c.Right, s.parent, false}} {
		if side.item == nil {
			continue
		}
		refs, err := btrfsread.ParseInodeRefs(c.Key, side.item)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if err := s.recordRef(side.root, side.isNew, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// processAllRefs records every name of the current inode in root (all new or
// all deleted) and processes them, for inodes deleted and recreated with the
// same number.
func (s *sendCtx) processAllRefs(root *btrfsread.Subvolume, isNew bool) error {
	refs, err := root.Refs(s.curIno)
	if err != nil && !notFound(err) {
		return err
	}
	for _, r := range refs {
		if err := s.recordRef(root, isNew, r); err != nil {
			return err
		}
	}
	_, err = s.processRecordedRefs()
	return err
}

// orphanize renames the inode at path to its orphan name.
func (s *sendCtx) orphanize(ino, gen uint64, path []byte) error {
	orphan, err := s.orphanName(ino, gen)
	if err != nil {
		return err
	}
	s.expectPath(path, ino, gen)
	if err := s.sendRename(path, orphan); err != nil {
		return err
	}
	if ino == s.curIno && gen == s.curGen {
		s.curInodePath = orphan
	}
	return nil
}

// renameCurrentInode moves the current inode from one path to another and
// remembers the new path.
func (s *sendCtx) renameCurrentInode(from, to []byte) error {
	s.expectPath(from, s.curIno, s.curGen)
	if err := s.sendRename(from, to); err != nil {
		return err
	}
	s.curInodePath = to
	return nil
}

// refreshRefPath recomputes a recorded ref's path after a directory on it
// may have been orphanized.
func (s *sendCtx) refreshRefPath(r *recordedRef) error {
	dirPath, err := s.curPath(r.dir, r.dirGen)
	if err != nil {
		return err
	}
	r.path = joinPath(dirPath, r.name())
	return nil
}

// processRecordedRefs sends the renames, links, unlinks and rmdirs that turn
// the current inode's old names into its new ones (the kernel's
// process_recorded_refs), in its phases: find the path the inode has now,
// move aside whatever holds one of its new names, take the new names, drop
// the old ones, then update the directories it left or entered.
// pendingMove reports that the inode's own move was delayed until an
// ancestor has been moved.
func (s *sendCtx) processRecordedRefs() (pendingMove bool, err error) {
	defer func() {
		s.newRefs.reset()
		s.deletedRefs.reset()
	}()
	if s.curIno <= btrfsread.FirstFreeObjectID {
		return false, fmt.Errorf("refs recorded for the subvolume root directory")
	}
	p := &refsPass{newRefs: s.newRefs.all(), deletedRefs: s.deletedRefs.all()}
	for _, phase := range []func(*refsPass) error{
		s.findValidPath,
		s.orphanizeOverwritten,
		s.takeNewRefs,
		s.dropDeletedRefs,
		s.updateTouchedDirs,
	} {
		if err := phase(p); err != nil {
			return false, err
		}
	}
	return p.pendingMove, nil
}

// refsPass is what the phases of processRecordedRefs hand on to each other.
type refsPass struct {
	newRefs, deletedRefs []*recordedRef
	// validPath is where the current inode is at the receiver now, an
	// orphan name while isOrphan.
	validPath []byte
	isOrphan  bool
	// orphanizedDir: a directory was moved aside, so recorded paths through
	// it may be stale; orphanizedAncestor: it was above the current inode.
	orphanizedDir, orphanizedAncestor bool
	pendingMove                       bool
	// checkDirs are the directories the inode left or entered.
	checkDirs []*recordedRef
}

// findValidPath finds the current inode's path at the receiver: its orphan
// name when it is new or its first name was taken over, else its path.
func (s *sendCtx) findValidPath(p *refsPass) error {
	didOverwrite := false
	if !s.curNew {
		var err error
		if didOverwrite, err = s.didOverwriteFirstRef(s.curIno, s.curGen); err != nil {
			return err
		}
	}
	var err error
	if s.curNew || didOverwrite {
		p.validPath, err = s.orphanName(s.curIno, s.curGen)
		p.isOrphan = true
	} else {
		p.validPath, err = s.curPath(s.curIno, s.curGen)
	}
	return err
}

// orphanizeOverwritten orphanizes or unlinks whatever unprocessed inode
// holds one of the new names in the parent tree, before any link or rename
// uses a path through it.
func (s *sendCtx) orphanizeOverwritten(p *refsPass) error {
	for _, cur := range p.newRefs {
		st, err := s.curInodeState(cur.dir, cur.dirGen)
		if err != nil {
			return err
		}
		if st.state == stateWillCreate {
			continue
		}
		holder, err := s.willOverwriteRef(cur.dir, cur.dirGen, cur.name())
		if err != nil {
			return err
		}
		if !holder.found {
			continue
		}
		ow, owMode := holder.who, holder.mode
		first, err := s.isFirstRef(s.parent, ow.ino, cur.dir, cur.name())
		if err != nil {
			return err
		}
		if p.orphanizedDir {
			if err := s.refreshRefPath(cur); err != nil {
				return err
			}
		}
		if !first {
			s.expectPath(cur.path, ow.ino, ow.gen)
			if err := s.sendUnlink(cur.path); err != nil {
				return err
			}
			continue
		}
		if err := s.orphanize(ow.ino, ow.gen, cur.path); err != nil {
			return err
		}
		s.curOrphanized[ow] = true
		if isDir(owMode) {
			p.orphanizedDir = true
		}
		if wdm := s.waitingDirMoves[ow.ino]; wdm != nil {
			wdm.orphanized = true
		}
		anc, err := s.isAncestor(s.parent, ow.ino, ow.gen, s.curIno)
		if err != nil {
			return err
		}
		// The kernel asks the parent tree only; at the receiver the
		// directory can also be above the inode through directories
		// moved already (its stream then works only if it named the
		// orphan before it existed, see didOverwriteRef).
		if anc || (isDir(owMode) && isUnder(p.validPath, cur.path)) {
			p.orphanizedAncestor = true
			s.curInodePath = nil
			if p.validPath, err = s.curPath(s.curIno, s.curGen); err != nil {
				return err
			}
		}
	}
	return nil
}

// takeNewRefs creates parents that come later in inode order, then moves
// or links the inode to each new name, unless a directory move has to
// wait.
func (s *sendCtx) takeNewRefs(p *refsPass) error {
	canRename := true
	for i, cur := range p.newRefs {
		if err := s.createParentIfNeeded(cur, p.newRefs[:i]); err != nil {
			return err
		}
		if isDir(s.curMode) && s.parent != nil {
			wait, err := s.waitForDestDirMove(cur, p.isOrphan)
			if err != nil {
				return err
			}
			if wait {
				canRename = false
				p.pendingMove = true
			}
		}
		if isDir(s.curMode) && s.parent != nil && canRename {
			wait, err := s.waitForParentMove(cur, p.isOrphan)
			if err != nil {
				return err
			}
			if wait {
				canRename = false
				p.pendingMove = true
			}
		}
		if p.orphanizedDir && canRename && (p.isOrphan || isDir(s.curMode)) {
			// Recorded before a directory on it may have been
			// orphanized (links refresh below, as the kernel does).
			if err := s.refreshRefPath(cur); err != nil {
				return err
			}
		}
		switch {
		case p.isOrphan && canRename:
			if err := s.renameCurrentInode(p.validPath, cur.path); err != nil {
				return err
			}
			p.isOrphan = false
			p.validPath = cur.path
		case canRename && isDir(s.curMode):
			if err := s.renameCurrentInode(p.validPath, cur.path); err != nil {
				return err
			}
			p.validPath = cur.path
		case canRename:
			if p.orphanizedDir {
				if err := s.refreshRefPath(cur); err != nil {
					return err
				}
			}
			if err := s.sendLink(cur.path, p.validPath); err != nil {
				return err
			}
		}
		p.checkDirs = append(p.checkDirs, cur)
	}
	return nil
}

// createParentIfNeeded creates the directory of new ref cur when it comes
// later in inode order and neither an earlier ref (earlier) nor an earlier
// inode created it.
func (s *sendCtx) createParentIfNeeded(cur *recordedRef, earlier []*recordedRef) error {
	st, err := s.curInodeState(cur.dir, cur.dirGen)
	if err != nil || st.state != stateWillCreate {
		return err
	}
	for _, prev := range earlier {
		if prev.dir == cur.dir {
			return nil
		}
	}
	if created, err := s.didCreateDir(cur.dir); err != nil || created {
		return err
	}
	return s.sendCreateInode(cur.dir)
}

// dropDeletedRefs removes the inode's old names: a deleted directory goes
// (or waits as an orphan until it is empty), a file's old names are
// unlinked, and an orphan name left over is unlinked.
func (s *sendCtx) dropDeletedRefs(p *refsPass) error {
	switch {
	case isDir(s.curMode) && s.curDeleted:
		ok, err := s.canRmdir(s.curIno, s.curGen)
		if err != nil {
			return err
		}
		if ok {
			if err := s.sendRmdir(p.validPath); err != nil {
				return err
			}
		} else if !p.isOrphan {
			if err := s.orphanize(s.curIno, s.curGen, p.validPath); err != nil {
				return err
			}
			p.isOrphan = true
		}
		p.checkDirs = append(p.checkDirs, p.deletedRefs...)
	case isDir(s.curMode) && len(p.deletedRefs) > 0:
		// A moved directory: its old parent needs new times.
		p.checkDirs = append(p.checkDirs, p.deletedRefs[0])
	case !isDir(s.curMode):
		for _, cur := range p.deletedRefs {
			over, err := s.didOverwriteRef(cur.dir, cur.dirGen, s.curIno, s.curGen, cur.name())
			if err != nil {
				return err
			}
			if !over {
				if p.orphanizedAncestor || p.orphanizedDir {
					if err := s.refreshRefPath(cur); err != nil {
						return err
					}
				}
				s.expectPath(cur.path, s.curIno, s.curGen)
				if err := s.sendUnlink(cur.path); err != nil {
					return err
				}
				if bytes.HasPrefix(cur.path, s.curInodePath) {
					s.curInodePath = nil
				}
			}
			p.checkDirs = append(p.checkDirs, cur)
		}
		if p.isOrphan {
			s.expectPath(p.validPath, s.curIno, s.curGen)
			if err := s.sendUnlink(p.validPath); err != nil {
				return err
			}
		}
	}
	return nil
}

// updateTouchedDirs gives the directories the inode left or entered new
// times, or the rmdir that is now possible; each (dir, gen) once.
func (s *sendCtx) updateTouchedDirs(p *refsPass) error {
	seen := map[inoGen]bool{}
	for _, cur := range p.checkDirs {
		key := inoGen{cur.dir, cur.dirGen}
		if cur.dir > s.curIno || seen[key] {
			continue
		}
		seen[key] = true
		st, err := s.curInodeState(cur.dir, cur.dirGen)
		if err != nil {
			return err
		}
		switch st.state {
		case stateDidCreate, stateNoChange:
			if err := s.cacheDirUtimes(cur.dir, cur.dirGen); err != nil {
				return err
			}
		case stateDidDelete:
			ok, err := s.canRmdir(cur.dir, cur.dirGen)
			if err != nil || !ok {
				return err
			}
			path, err := s.curPath(cur.dir, cur.dirGen)
			if err != nil {
				return err
			}
			if err := s.sendRmdir(path); err != nil {
				return err
			}
		}
	}
	return nil
}

// didCreateDir reports whether directory dir was already created out of order
// for an earlier inode: some entry of it in the send tree belongs to an inode
// below sendProgress.
// It walks the directory's index items, stopping at the first such entry,
// instead of reading the whole directory.
func (s *sendCtx) didCreateDir(dir uint64) (bool, error) {
	created := false
	from, to := btrfsread.Key{ObjectID: dir, Type: btrfsread.DirIndexKey}, btrfsread.Key{ObjectID: dir, Type: btrfsread.DirIndexKey, Offset: ^uint64(0)}
	err := s.send.Tree().Walk(from, to, func(it btrfsread.Item) error {
		entries, err := btrfsread.ParseDirItems(it.Key, it.Data)
		for _, e := range entries {
			if e.Location.Type != btrfsread.RootItemKey && e.Location.ObjectID < s.sendProgress {
				created = true
				return btrfsread.ErrStopWalk
			}
		}
		return err
	})
	if err != nil && !notFound(err) {
		return false, fmt.Errorf("directory %d of subvolume %d: %w", dir, s.send.ID, err)
	}
	return created, nil
}

// createInodeIfNeeded creates the current inode unless it is a directory
// already created out of order.
func (s *sendCtx) createInodeIfNeeded() error {
	if isDir(s.curMode) {
		done, err := s.didCreateDir(s.curIno)
		if err != nil || done {
			return err
		}
	}
	return s.sendCreateInode(s.curIno)
}

// orphanDirInfo remembers a deleted directory that could not be removed yet
// because entries of it are still to be moved out.
type orphanDirInfo struct {
	lastEntry     int // position in the parent's directory listing to resume from
	dirHighSeqIno uint64
}

// canRmdir reports whether deleted directory dir has no entry left at the
// receiver: every entry it had in the parent tree belongs to an inode
// processed already and not waiting for a delayed move. If not, it is
// remembered as an orphan directory to retry later.
func (s *sendCtx) canRmdir(dir, dirGen uint64) (bool, error) {
	if dir == btrfsread.FirstFreeObjectID {
		return false, nil
	}
	key := inoGen{dir, dirGen}
	odi := s.orphanDirs[key]
	if odi != nil && s.curIno < odi.dirHighSeqIno {
		return false, nil
	}
	entries, err := s.parent.ReadDir(dir)
	if err != nil && !notFound(err) {
		return false, err
	}
	var highSeq uint64
	if odi == nil && len(entries) > 0 {
		// The last entry usually has the highest inode number: a cheap
		// early answer for the common case of a large deleted directory.
		highSeq = entries[len(entries)-1].Location.ObjectID
		if s.curIno < highSeq {
			s.orphanDirs[key] = &orphanDirInfo{dirHighSeqIno: highSeq}
			return false, nil
		}
	}
	start := 0
	if odi != nil {
		start = odi.lastEntry
	}
	for i := start; i < len(entries); i++ {
		ino := entries[i].Location.ObjectID
		highSeq = max(highSeq, ino)
		if wdm := s.waitingDirMoves[ino]; wdm != nil {
			wdm.rmdirIno, wdm.rmdirGen = dir, dirGen
			s.rememberOrphanDir(key, odi, i, highSeq)
			return false, nil
		}
		if ino > s.curIno {
			s.rememberOrphanDir(key, odi, i, highSeq)
			return false, nil
		}
	}
	delete(s.orphanDirs, key)
	return true, nil
}

func (s *sendCtx) rememberOrphanDir(key inoGen, odi *orphanDirInfo, lastEntry int, highSeq uint64) {
	if odi == nil {
		odi = &orphanDirInfo{}
		s.orphanDirs[key] = odi
	}
	odi.lastEntry = lastEntry
	odi.dirHighSeqIno = max(odi.dirHighSeqIno, highSeq)
}
