package sendgen

import (
	"bytes"
	"fmt"
	"strconv"

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
	index map[string]int
	live  int
}

func refKey(dir, dirGen uint64, name []byte) string {
	return strconv.FormatUint(dir, 10) + "/" + strconv.FormatUint(dirGen, 10) + "/" + string(name)
}

func (l *refList) add(r *recordedRef) {
	if l.index == nil {
		l.index = map[string]int{}
	}
	l.index[refKey(r.dir, r.dirGen, r.name())] = len(l.refs)
	l.refs = append(l.refs, r)
	l.live++
}

// remove drops the ref with that identity, reporting whether it existed.
func (l *refList) remove(dir, dirGen uint64, name []byte) bool {
	k := refKey(dir, dirGen, name)
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

func (l *refList) reset() { *l = refList{} }

// recordRef records one name of the current inode from root: new names are
// from the send tree, deleted ones from the parent. A name recorded on the
// other side already cancels out.
func (s *sendCtx) recordRef(root *btrfsread.Subvolume, isNew bool, ref btrfsread.InodeRef) error {
	dirGen, err := s.inodeGen(root, ref.Parent)
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
	if c.Left != nil {
		refs, err := btrfsread.ParseInodeRefs(c.Key, c.Left)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if err := s.recordRef(s.send, true, r); err != nil {
				return err
			}
		}
	}
	if c.Right != nil {
		refs, err := btrfsread.ParseInodeRefs(c.Key, c.Right)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if err := s.recordRef(s.parent, false, r); err != nil {
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
// process_recorded_refs). pendingMove reports that the inode's own move was
// delayed until an ancestor has been moved.
func (s *sendCtx) processRecordedRefs() (pendingMove bool, err error) {
	defer func() {
		s.newRefs.reset()
		s.deletedRefs.reset()
	}()
	if s.curIno <= btrfsread.FirstFreeObjectID {
		return false, fmt.Errorf("refs recorded for the subvolume root directory")
	}
	newRefs, deletedRefs := s.newRefs.all(), s.deletedRefs.all()
	var checkDirs []*recordedRef
	var validPath []byte
	isOrphan, didOverwrite := false, false
	if !s.curNew {
		if didOverwrite, err = s.didOverwriteFirstRef(s.curIno, s.curGen); err != nil {
			return false, err
		}
	}
	if s.curNew || didOverwrite {
		if validPath, err = s.orphanName(s.curIno, s.curGen); err != nil {
			return false, err
		}
		isOrphan = true
	} else if validPath, err = s.curPath(s.curIno, s.curGen); err != nil {
		return false, err
	}

	// First pass: orphanize or unlink whatever unprocessed inode holds one
	// of our new names in the parent tree, before any link or rename uses a
	// path through it.
	orphanizedDir, orphanizedAncestor := false, false
	for _, cur := range newRefs {
		st, _, _, err := s.curInodeState(cur.dir, cur.dirGen)
		if err != nil {
			return false, err
		}
		if st == stateWillCreate {
			continue
		}
		ow, owMode, overwrites, err := s.willOverwriteRef(cur.dir, cur.dirGen, cur.name())
		if err != nil {
			return false, err
		}
		if !overwrites {
			continue
		}
		first, err := s.isFirstRef(s.parent, ow.ino, cur.dir, cur.name())
		if err != nil {
			return false, err
		}
		if orphanizedDir {
			if err := s.refreshRefPath(cur); err != nil {
				return false, err
			}
		}
		if !first {
			s.expectPath(cur.path, ow.ino, ow.gen)
			if err := s.sendUnlink(cur.path); err != nil {
				return false, err
			}
			continue
		}
		if err := s.orphanize(ow.ino, ow.gen, cur.path); err != nil {
			return false, err
		}
		s.curOrphanized[ow] = true
		if isDir(owMode) {
			orphanizedDir = true
		}
		if wdm := s.waitingDirMoves[ow.ino]; wdm != nil {
			wdm.orphanized = true
		}
		anc, err := s.isAncestor(s.parent, ow.ino, ow.gen, s.curIno)
		if err != nil {
			return false, err
		}
		// The kernel asks the parent tree only; at the receiver the
		// directory can also be above the inode through directories
		// moved already (its stream then works only if it named the
		// orphan before it existed, see didOverwriteRef).
		if anc || (isDir(owMode) && isUnder(validPath, cur.path)) {
			orphanizedAncestor = true
			s.curInodePath = nil
			if validPath, err = s.curPath(s.curIno, s.curGen); err != nil {
				return false, err
			}
		}
	}

	// Second pass: create parents that come later in inode order, then
	// move or link the inode to each new name.
	canRename := true
	for i, cur := range newRefs {
		st, _, _, err := s.curInodeState(cur.dir, cur.dirGen)
		if err != nil {
			return false, err
		}
		if st == stateWillCreate {
			created := false
			for _, prev := range newRefs[:i] {
				if prev.dir == cur.dir {
					created = true
					break
				}
			}
			if !created {
				if created, err = s.didCreateDir(cur.dir); err != nil {
					return false, err
				}
			}
			if !created {
				if err := s.sendCreateInode(cur.dir); err != nil {
					return false, err
				}
			}
		}
		if isDir(s.curMode) && s.parent != nil {
			wait, err := s.waitForDestDirMove(cur, isOrphan)
			if err != nil {
				return false, err
			}
			if wait {
				canRename = false
				pendingMove = true
			}
		}
		if isDir(s.curMode) && s.parent != nil && canRename {
			wait, err := s.waitForParentMove(cur, isOrphan)
			if err != nil {
				return false, err
			}
			if wait {
				canRename = false
				pendingMove = true
			}
		}
		if orphanizedDir && canRename && (isOrphan || isDir(s.curMode)) {
			// Recorded before a directory on it may have been
			// orphanized (links refresh below, as the kernel does).
			if err := s.refreshRefPath(cur); err != nil {
				return false, err
			}
		}
		switch {
		case isOrphan && canRename:
			if err := s.renameCurrentInode(validPath, cur.path); err != nil {
				return false, err
			}
			isOrphan = false
			validPath = cur.path
		case canRename && isDir(s.curMode):
			if err := s.renameCurrentInode(validPath, cur.path); err != nil {
				return false, err
			}
			validPath = cur.path
		case canRename:
			if orphanizedDir {
				if err := s.refreshRefPath(cur); err != nil {
					return false, err
				}
			}
			if err := s.sendLink(cur.path, validPath); err != nil {
				return false, err
			}
		}
		checkDirs = append(checkDirs, cur)
	}

	switch {
	case isDir(s.curMode) && s.curDeleted:
		ok, err := s.canRmdir(s.curIno, s.curGen)
		if err != nil {
			return false, err
		}
		if ok {
			if err := s.sendRmdir(validPath); err != nil {
				return false, err
			}
		} else if !isOrphan {
			if err := s.orphanize(s.curIno, s.curGen, validPath); err != nil {
				return false, err
			}
			isOrphan = true
		}
		checkDirs = append(checkDirs, deletedRefs...)
	case isDir(s.curMode) && len(deletedRefs) > 0:
		// A moved directory: its old parent needs new times.
		checkDirs = append(checkDirs, deletedRefs[0])
	case !isDir(s.curMode):
		for _, cur := range deletedRefs {
			over, err := s.didOverwriteRef(cur.dir, cur.dirGen, s.curIno, s.curGen, cur.name())
			if err != nil {
				return false, err
			}
			if !over {
				if orphanizedAncestor || orphanizedDir {
					if err := s.refreshRefPath(cur); err != nil {
						return false, err
					}
				}
				s.expectPath(cur.path, s.curIno, s.curGen)
				if err := s.sendUnlink(cur.path); err != nil {
					return false, err
				}
				if bytes.HasPrefix(cur.path, s.curInodePath) {
					s.curInodePath = nil
				}
			}
			checkDirs = append(checkDirs, cur)
		}
		if isOrphan {
			s.expectPath(validPath, s.curIno, s.curGen)
			if err := s.sendUnlink(validPath); err != nil {
				return false, err
			}
		}
	}

	// The directories the inode left or entered: new times, or an rmdir
	// that is now possible. Each (dir, gen) once.
	seen := map[inoGen]bool{}
	for _, cur := range checkDirs {
		if cur.dir > s.curIno {
			continue
		}
		key := inoGen{cur.dir, cur.dirGen}
		if seen[key] {
			continue
		}
		seen[key] = true
		st, _, _, err := s.curInodeState(cur.dir, cur.dirGen)
		if err != nil {
			return false, err
		}
		switch st {
		case stateDidCreate, stateNoChange:
			if err := s.cacheDirUtimes(cur.dir, cur.dirGen); err != nil {
				return false, err
			}
		case stateDidDelete:
			ok, err := s.canRmdir(cur.dir, cur.dirGen)
			if err != nil {
				return false, err
			}
			if ok {
				p, err := s.curPath(cur.dir, cur.dirGen)
				if err != nil {
					return false, err
				}
				if err := s.sendRmdir(p); err != nil {
					return false, err
				}
			}
		}
	}
	return pendingMove, nil
}

// didCreateDir reports whether directory dir was already created out of order
// for an earlier inode: some entry of it in the send tree belongs to an inode
// below sendProgress.
func (s *sendCtx) didCreateDir(dir uint64) (bool, error) {
	entries, err := s.send.ReadDir(dir)
	if err != nil && !notFound(err) {
		return false, err
	}
	for _, e := range entries {
		if e.Location.Type != btrfsread.RootItemKey && e.Location.ObjectID < s.sendProgress {
			return true, nil
		}
	}
	return false, nil
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

// sameName reports whether two names are equal.
func sameName(a, b []byte) bool { return bytes.Equal(a, b) }
