package sendgen

import (
	"bytes"

	"sendfs/btrfsread"
)

// Delayed directory moves. Inodes are processed in ascending number, but a
// directory may have to move under a directory with a higher number that has
// itself not been moved yet. Such a move is queued under that ancestor and
// applied when the ancestor is finished.

// pendingDirMove is a delayed move of directory ino, waiting for parentIno.
// updateRefs are the old and new names whose directories need new times
// once the move is done.
type pendingDirMove struct {
	parentIno  uint64
	ino, gen   uint64
	updateRefs []*recordedRef
}

// waitingDirMove marks a directory whose move is delayed. rmdirIno is a
// deleted directory that can only be removed after this move; orphanized
// says the directory was renamed to its orphan name in the meantime.
type waitingDirMove struct {
	rmdirIno, rmdirGen uint64
	orphanized         bool
}

// addPendingDirMove queues the move of (ino, gen) under parentIno.
func (s *sendCtx) addPendingDirMove(ino, gen, parentIno uint64, newRefs, deletedRefs []*recordedRef, isOrphan bool) {
	pm := &pendingDirMove{parentIno: parentIno, ino: ino, gen: gen}
	for _, r := range deletedRefs {
		pm.updateRefs = append(pm.updateRefs, &recordedRef{dir: r.dir, dirGen: r.dirGen})
	}
	for _, r := range newRefs {
		pm.updateRefs = append(pm.updateRefs, &recordedRef{dir: r.dir, dirGen: r.dirGen})
	}
	s.waitingDirMoves[ino] = &waitingDirMove{orphanized: isOrphan}
	s.pendingDirMoves[parentIno] = append(s.pendingDirMoves[parentIno], pm)
}

// waitForDestDirMove delays the current directory's move when its new name
// is the old name of another directory whose own move is delayed.
func (s *sendCtx) waitForDestDirMove(ref *recordedRef, isOrphan bool) (bool, error) {
	if len(s.waitingDirMoves) == 0 {
		return false, nil
	}
	di, err := s.parent.LookupName(ref.dir, ref.name())
	if notFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if di.Location.Type != btrfsread.InodeItemKey {
		return false, nil
	}
	other := di.Location.ObjectID
	leftGen, err := s.inodes.gen(s.parent, other)
	if err != nil {
		return false, err
	}
	right, ok, err := s.inodes.get(s.send, other)
	if err != nil || !ok || right.Generation != leftGen {
		return false, err
	}
	if wdm := s.waitingDirMoves[other]; wdm != nil && !wdm.orphanized {
		s.addPendingDirMove(s.curIno, s.curGen, other, s.newRefs.all(), s.deletedRefs.all(), isOrphan)
		return true, nil
	}
	return false, nil
}

// waitForParentMove delays the current directory's move when one of its new
// ancestors (with a higher number) still has to be moved or renamed itself.
func (s *sendCtx) waitForParentMove(ref *recordedRef, isOrphan bool) (bool, error) {
	ino, inoGen := ref.dir, ref.dirGen
	for depth := 0; ino > btrfsread.FirstFreeObjectID; depth++ {
		if depth > maxPathDepth {
			return false, errDirLoop(ref.dir)
		}
		if _, waiting := s.waitingDirMoves[ino]; waiting {
			// Delay only if we are an ancestor of that waiting directory
			// in the parent tree; otherwise the delays could form a cycle.
			anc, err := s.isAncestor(s.parent, s.curIno, s.curGen, ino)
			if err != nil {
				return false, err
			}
			if anc {
				s.addPendingDirMove(s.curIno, s.curGen, ino, s.newRefs.all(), s.deletedRefs.all(), isOrphan)
				return true, nil
			}
		}
		after, err := s.firstRef(s.send, ino)
		if err != nil {
			return false, err
		}
		before, err := s.firstRef(s.parent, ino)
		if notFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if ino > s.curIno && (before.parent != after.parent || !bytes.Equal(before.name, after.name)) {
			inParent, ok, err := s.inodes.get(s.parent, ino)
			if err != nil {
				return false, err
			}
			if ok && inParent.Generation == inoGen {
				s.addPendingDirMove(s.curIno, s.curGen, ino, s.newRefs.all(), s.deletedRefs.all(), isOrphan)
				return true, nil
			}
		}
		ino, inoGen = after.parent, after.parentGen
	}
	return false, nil
}

// pathLoop reports whether the current path of (ino, gen) would pass through
// ino itself, because an ancestor is still waiting for its own move; it
// returns the first waiting ancestor.
func (s *sendCtx) pathLoop(ino, gen uint64) (loop bool, ancestor uint64, err error) {
	start := ino
	for depth := 0; ino != btrfsread.FirstFreeObjectID; depth++ {
		if depth > maxPathDepth {
			return false, 0, errDirLoop(start)
		}
		if _, ok := s.orphanDirs[inoGen{ino, gen}]; ok {
			break
		}
		var step pathStep
		if wdm := s.waitingDirMoves[ino]; wdm != nil {
			if ancestor == 0 {
				ancestor = ino
			}
			step, err = s.firstRef(s.parent, ino)
			if wdm.orphanized && notFound(err) {
				// Past the kernel, which fails here with ENOENT: a new
				// directory waiting under its orphan name stands in the
				// subvolume root, so the path ends there.
				s.pastKernel = true
				break
			}
		} else {
			step, err = s.curNameAndParent(ino, gen)
			if err == nil && step.orphan {
				break
			}
		}
		if err != nil {
			return false, 0, err
		}
		if step.parent == start {
			if ancestor == 0 {
				ancestor = ino
			}
			return true, ancestor, nil
		}
		ino, gen = step.parent, step.parentGen
	}
	return false, ancestor, nil
}

// applyDirMove performs one delayed move now that its ancestor is in place.
func (s *sendCtx) applyDirMove(pm *pendingDirMove) error {
	origProgress := s.sendProgress
	defer func() { s.sendProgress = origProgress }()
	clear(s.expect) // what earlier moves computed is not used here

	dm := s.waitingDirMoves[pm.ino]
	rmdirIno, rmdirGen, isOrphan := dm.rmdirIno, dm.rmdirGen, dm.orphanized
	delete(s.waitingDirMoves, pm.ino)

	var from []byte
	var err error
	if isOrphan {
		from, err = s.orphanName(pm.ino, pm.gen)
	} else {
		var ref pathStep
		if ref, err = s.firstRef(s.parent, pm.ino); err != nil {
			return err
		}
		var dirPath []byte
		if dirPath, err = s.curPath(ref.parent, ref.parentGen); err != nil {
			return err
		}
		from = joinPath(dirPath, ref.name)
	}
	if err != nil {
		return err
	}

	s.sendProgress = s.curIno + 1
	loop, ancestor, err := s.pathLoop(pm.ino, pm.gen)
	if err != nil {
		return err
	}
	if loop {
		s.addPendingDirMove(pm.ino, pm.gen, ancestor, pm.updateRefs, nil, isOrphan)
		if rmdirIno != 0 {
			dm := s.waitingDirMoves[pm.ino]
			dm.rmdirIno, dm.rmdirGen = rmdirIno, rmdirGen
		}
		return nil
	}
	to, err := s.curPath(pm.ino, pm.gen)
	if err != nil {
		return err
	}
	s.expectPath(from, pm.ino, pm.gen)
	if err := s.sendRename(from, to); err != nil {
		return err
	}

	if rmdirIno != 0 {
		if _, ok := s.orphanDirs[inoGen{rmdirIno, rmdirGen}]; ok {
			can, err := s.canRmdir(rmdirIno, rmdirGen)
			if err != nil {
				return err
			}
			if can {
				p, err := s.curPath(rmdirIno, rmdirGen)
				if err != nil {
					return err
				}
				if err := s.sendRmdir(p); err != nil {
					return err
				}
			}
		}
	}

	if err := s.cacheDirUtimes(pm.ino, pm.gen); err != nil {
		return err
	}
	// The old and new parents changed too, unless deleted meanwhile.
	for _, r := range pm.updateRefs {
		_, ok, err := s.inodes.get(s.send, r.dir)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := s.cacheDirUtimes(r.dir, r.dirGen); err != nil {
			return err
		}
	}
	return nil
}

// applyChildrenDirMoves applies the moves waiting for the current inode, and
// transitively those waiting for the directories moved.
func (s *sendCtx) applyChildrenDirMoves() error {
	queue := s.takePendingDirMoves(s.curIno)
	for len(queue) > 0 {
		pm := queue[0]
		queue = queue[1:]
		if err := s.applyDirMove(pm); err != nil {
			return err
		}
		queue = append(queue, s.takePendingDirMoves(pm.ino)...)
	}
	return nil
}

func (s *sendCtx) takePendingDirMoves(parent uint64) []*pendingDirMove {
	pms := s.pendingDirMoves[parent]
	delete(s.pendingDirMoves, parent)
	return pms
}
