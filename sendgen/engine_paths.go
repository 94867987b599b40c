package sendgen

import (
	"bytes"
	"fmt"
	"strconv"

	"sendfs/btrfsread"
)

// Where an inode stands at the receiver at the current point of the stream
// (the kernel's inode_state).
type inodeState int

const (
	stateNone inodeState = iota // exists in neither tree with that generation
	stateNoChange
	stateWillCreate
	stateDidCreate
	stateWillDelete
	stateDidDelete
)

// inodeStatus is what curInodeState finds of (ino, gen): its state at the
// receiver now, and the generation each tree has for ino (0 when absent or
// unlinked).
type inodeStatus struct {
	state              inodeState
	sendGen, parentGen uint64
}

// exists reports whether the inode exists at the receiver now.
func (st inodeStatus) exists() bool {
	return st.state == stateNoChange || st.state == stateDidCreate || st.state == stateWillDelete
}

// curInodeState says whether (ino, gen) exists, will exist or did exist at
// the receiver now.
func (s *sendCtx) curInodeState(ino, gen uint64) (inodeStatus, error) {
	var st inodeStatus
	left, lok, err := s.inodes.get(s.send, ino)
	if err != nil {
		return st, err
	}
	lok = lok && left.Nlink > 0
	right, rok, err := s.inodes.get(s.parent, ino)
	if err != nil {
		return st, err
	}
	rok = rok && right.Nlink > 0
	if lok {
		st.sendGen = left.Generation
	}
	if rok {
		st.parentGen = right.Generation
	}
	done := ino < s.sendProgress
	created, deleted := stateWillCreate, stateWillDelete
	if done {
		created, deleted = stateDidCreate, stateDidDelete
	}
	switch {
	case lok && rok && left.Generation == gen && right.Generation == gen:
		st.state = stateNoChange
	case lok && left.Generation == gen:
		st.state = created
	case rok && right.Generation == gen:
		st.state = deleted
	default:
		st.state = stateNone
	}
	return st, nil
}

// inodeExists is curInodeState for callers that ask whether (ino, gen)
// exists at the receiver now. The root directory always exists (its
// generations are not looked up: callers never compare them).
func (s *sendCtx) inodeExists(ino, gen uint64) (inodeStatus, error) {
	if ino == btrfsread.FirstFreeObjectID {
		return inodeStatus{state: stateNoChange}, nil
	}
	return s.curInodeState(ino, gen)
}

// firstRef returns the first name of ino in root, with its parent directory
// and that directory's generation.
func (s *sendCtx) firstRef(root *btrfsread.Subvolume, ino uint64) (pathStep, error) {
	refs, err := s.inodes.refs(root, ino)
	if err != nil {
		return pathStep{}, fmt.Errorf("names of inode %d in subvolume %d: %w", ino, root.ID, err)
	}
	if len(refs) == 0 {
		return pathStep{}, fmt.Errorf("inode %d in subvolume %d has no name: %w", ino, root.ID, btrfsread.ErrNotFound)
	}
	dirGen, err := s.inodes.gen(root, refs[0].Parent)
	if err != nil {
		return pathStep{}, err
	}
	return pathStep{name: refs[0].Name, parent: refs[0].Parent, parentGen: dirGen}, nil
}

// lookupDirItemInode returns the inode behind name in dir of root; ok is false
// when there is no such entry or it is a nested subvolume.
func (s *sendCtx) lookupDirItemInode(root *btrfsread.Subvolume, dir uint64, name []byte) (uint64, bool, error) {
	di, err := root.LookupName(dir, name)
	if notFound(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if di.Location.Type == btrfsread.RootItemKey {
		return 0, false, nil
	}
	return di.Location.ObjectID, true, nil
}

// orphanName is a name unique in the root directory of both trees:
// o<ino>-<gen>-<idx>.
func (s *sendCtx) orphanName(ino, gen uint64) ([]byte, error) {
	for idx := uint64(0); ; idx++ {
		name := make([]byte, 0, 64)
		name = append(strconv.AppendUint(append(name, 'o'), ino, 10), '-')
		name = append(strconv.AppendUint(name, gen, 10), '-')
		name = strconv.AppendUint(name, idx, 10)
		taken, err := s.rootNames.taken(s, name)
		if err != nil || !taken {
			return name, err
		}
	}
}

// rootNames answers orphanName's question, whether a name is taken in the
// root directory of either tree. The first orphan names are looked up one
// by one; a send that needs more (a full send needs one per inode) reads
// the names of both root directories once, unless they are large.
type rootNames struct {
	lookups int
	read    bool            // the names were read, or found too many to read
	names   map[string]bool // the names, when read
}

const (
	// rootNamesAfter is how many lookups come before the names are read.
	rootNamesAfter = 64
	// rootNamesMax bounds the names read, as the root directories' sizes
	// count them (twice their bytes).
	rootNamesMax = 1 << 20
)

func (r *rootNames) taken(s *sendCtx, name []byte) (bool, error) {
	if r.names != nil {
		return r.names[string(name)], nil
	}
	if r.lookups++; r.lookups > rootNamesAfter && !r.read {
		r.read = true
		names, err := s.readRootNames()
		if err != nil {
			return false, err
		}
		if r.names = names; names != nil {
			return names[string(name)], nil
		}
	}
	for _, root := range []*btrfsread.Subvolume{s.send, s.parent} {
		if root == nil {
			continue
		}
		_, err := root.LookupName(btrfsread.FirstFreeObjectID, name)
		if err == nil || !notFound(err) {
			return err == nil, err
		}
	}
	return false, nil
}

// readRootNames returns the entries of both root directories, or nil when
// they are larger than rootNamesMax.
func (s *sendCtx) readRootNames() (map[string]bool, error) {
	roots := []*btrfsread.Subvolume{s.send}
	if s.parent != nil {
		roots = append(roots, s.parent)
	}
	var size uint64
	for _, root := range roots {
		ii, err := s.inodes.item(root, btrfsread.FirstFreeObjectID)
		if err != nil {
			return nil, err
		}
		size += ii.Size
	}
	if size > rootNamesMax {
		return nil, nil
	}
	names := map[string]bool{}
	for _, root := range roots {
		ents, err := root.ReadDir(btrfsread.FirstFreeObjectID)
		if err != nil && !notFound(err) {
			return nil, err
		}
		for _, e := range ents {
			names[string(e.Name)] = true
		}
	}
	return names, nil
}

// nameHolder is the inode that holds a name in the parent tree
// (willOverwriteRef); found is false when no inode that matters holds it.
type nameHolder struct {
	who   inoGen
	mode  uint64
	found bool
}

// willOverwriteRef reports whether the new name (dir, name) is taken in the
// parent tree by an inode that has not been processed yet (or whose move is
// pending), returning that inode.
func (s *sendCtx) willOverwriteRef(dir, dirGen uint64, name []byte) (nameHolder, error) {
	if s.parent == nil {
		return nameHolder{}, nil
	}
	st, err := s.inodeExists(dir, dirGen)
	if err != nil || !st.exists() {
		return nameHolder{}, err
	}
	if dir != btrfsread.FirstFreeObjectID && st.parentGen != dirGen {
		return nameHolder{}, nil
	}
	other, found, err := s.lookupDirItemInode(s.parent, dir, name)
	if err != nil || !found {
		return nameHolder{}, err
	}
	if _, waiting := s.waitingDirMoves[other]; other > s.sendProgress || waiting {
		ii, ok, err := s.inodes.get(s.parent, other)
		if err != nil {
			return nameHolder{}, err
		}
		if !ok {
			return nameHolder{}, fmt.Errorf("directory entry %q of inode %d points to missing inode %d", name, dir, other)
		}
		return nameHolder{who: inoGen{other, ii.Generation}, mode: uint64(ii.Mode), found: true}, nil
	}
	return nameHolder{}, nil
}

// didOverwriteRef reports whether the old name (dir, name) of ino was taken
// over by an inode processed already, so ino now lives under its orphan name.
func (s *sendCtx) didOverwriteRef(dir, dirGen, ino, gen uint64, name []byte) (bool, error) {
	if s.parent == nil {
		return false, nil
	}
	st, err := s.inodeExists(dir, dirGen)
	if err != nil || !st.exists() {
		return false, err
	}
	if dir != btrfsread.FirstFreeObjectID && st.sendGen != dirGen {
		return false, nil
	}
	ow, found, err := s.lookupDirItemInode(s.send, dir, name)
	if err != nil || !found {
		return false, err
	}
	var owGen uint64
	if ow == ino {
		if owGen, err = s.inodes.gen(s.send, ow); err != nil {
			return false, err
		}
		if owGen == gen {
			return false, nil
		}
	}
	if ow < s.sendProgress {
		return true, nil
	}
	// The current inode takes the name over only once it has orphanized
	// ino (the kernel answers yes as soon as the send tree says so, and
	// names the orphan before it exists unless its name cache still holds
	// the old name).
	if ino != s.curIno && ow == s.curIno && s.curOrphanized[inoGen{ino, gen}] {
		if owGen == 0 {
			if owGen, err = s.inodes.gen(s.send, ow); err != nil {
				return false, err
			}
		}
		if owGen == s.curGen {
			return true, nil
		}
	}
	return false, nil
}

// didOverwriteFirstRef: didOverwriteRef for ino's first name in the parent.
func (s *sendCtx) didOverwriteFirstRef(ino, gen uint64) (bool, error) {
	if s.parent == nil {
		return false, nil
	}
	ref, err := s.firstRef(s.parent, ino)
	if err != nil {
		return false, err
	}
	return s.didOverwriteRef(ref.parent, ref.parentGen, ino, gen, ref.name)
}

// pathStep is one step of a path walk: a name of an inode and its parent
// directory (for curNameAndParent, the name at the receiver now); orphan
// means the name is an orphan name in the subvolume root (the walk stops
// there).
type pathStep struct {
	name              []byte
	parent, parentGen uint64
	orphan            bool
}

// curNameAndParent returns ino's current name and parent at the receiver.
func (s *sendCtx) curNameAndParent(ino, gen uint64) (pathStep, error) {
	orphan := func() (pathStep, error) {
		name, err := s.orphanName(ino, gen)
		return pathStep{name: name, orphan: true}, err
	}
	st, err := s.inodeExists(ino, gen)
	if err != nil {
		return pathStep{}, err
	}
	if !st.exists() {
		return orphan()
	}
	root := s.parent
	if ino < s.sendProgress {
		root = s.send
	}
	ref, err := s.firstRef(root, ino)
	if err != nil {
		return pathStep{}, err
	}
	over, err := s.didOverwriteRef(ref.parent, ref.parentGen, ino, gen, ref.name)
	if err != nil {
		return pathStep{}, err
	}
	if over {
		return orphan()
	}
	return ref, nil
}

// maxPathDepth bounds path walks: a loop in corrupt metadata or an engine bug
// must end in an error, not hang.
const maxPathDepth = 4096

func errDirLoop(ino uint64) error {
	return fmt.Errorf("path of inode %d does not reach the subvolume root (directory loop)", ino)
}

// curPath returns the path of (ino, gen) as the receiver sees it at this
// point of the stream (the kernel's get_cur_path).
//
// The current inode's path is cached from its first computation until a
// rename, unlink or orphanization changes it (kernel 6.15+, backported to
// 6.6): with hard links the cached name can differ from the first ref, and
// the stream keeps using it, as the kernel's does.
func (s *sendCtx) curPath(ino, gen uint64) ([]byte, error) {
	isCur := ino == s.curIno && gen == s.curGen
	if isCur && s.curInodePath != nil {
		s.expectPath(s.curInodePath, ino, gen)
		return s.curInodePath, nil
	}
	p, err := s.computePath(ino, gen)
	if err != nil {
		return nil, err
	}
	if isCur {
		s.curInodePath = p
	}
	s.expectPath(p, ino, gen)
	return p, nil
}

// computePath walks from (ino, gen) up to the subvolume root.
func (s *sendCtx) computePath(ino, gen uint64) ([]byte, error) {
	var comps [][]byte
	for depth := 0; ino != btrfsread.FirstFreeObjectID; depth++ {
		if depth > maxPathDepth {
			return nil, errDirLoop(ino)
		}
		if _, ok := s.orphanDirs[inoGen{ino, gen}]; ok {
			name, err := s.orphanName(ino, gen)
			if err != nil {
				return nil, err
			}
			comps = append(comps, name)
			break
		}
		var step pathStep
		var err error
		if wdm := s.waitingDirMoves[ino]; wdm != nil && wdm.orphanized {
			step.name, err = s.orphanName(ino, gen)
			step.orphan = true
		} else if wdm != nil {
			step, err = s.firstRef(s.parent, ino)
		} else {
			step, err = s.curNameAndParent(ino, gen)
		}
		if err != nil {
			return nil, err
		}
		comps = append(comps, step.name)
		if step.orphan {
			break
		}
		ino, gen = step.parent, step.parentGen
	}
	n := 0
	for _, c := range comps {
		n += len(c) + 1
	}
	p := make([]byte, 0, n)
	for i := len(comps) - 1; i >= 0; i-- {
		if len(p) > 0 {
			p = append(p, '/')
		}
		p = append(p, comps[i]...)
	}
	return p, nil
}

// isFirstRef reports whether (dir, name) is ino's first name in root.
func (s *sendCtx) isFirstRef(root *btrfsread.Subvolume, ino, dir uint64, name []byte) (bool, error) {
	ref, err := s.firstRef(root, ino)
	if err != nil {
		return false, err
	}
	return ref.parent == dir && bytes.Equal(ref.name, name), nil
}

// checkInoInPath reports whether ino1 is ino2 or one of its ancestors (by
// first refs) in root.
func (s *sendCtx) checkInoInPath(root *btrfsread.Subvolume, ino1, gen1, ino2, gen2 uint64) (bool, error) {
	if ino1 == ino2 {
		return gen1 == gen2, nil
	}
	ino := ino2
	for depth := 0; ino > btrfsread.FirstFreeObjectID; depth++ {
		if depth > maxPathDepth {
			return false, errDirLoop(ino2)
		}
		ref, err := s.firstRef(root, ino)
		if err != nil {
			return false, err
		}
		if ref.parent == ino1 {
			return ref.parentGen == gen1, nil
		}
		ino = ref.parent
	}
	return false, nil
}

// isAncestor reports whether ino1 is an ancestor of ino2 in root through any
// of ino2's names.
func (s *sendCtx) isAncestor(root *btrfsread.Subvolume, ino1, gen1, ino2 uint64) (bool, error) {
	refs, err := root.Refs(ino2)
	if err != nil {
		if notFound(err) {
			return false, nil
		}
		return false, err
	}
	for _, dir := range parentDirs(refs) {
		parentGen, err := s.inodes.gen(root, dir)
		if err != nil {
			return false, err
		}
		in, err := s.checkInoInPath(root, ino1, gen1, dir, parentGen)
		if err != nil || in {
			return in, err
		}
	}
	return false, nil
}

// parentDirs returns the directories refs are in, in order, each run of
// names in one directory once (refs come grouped by directory).
func parentDirs(refs []btrfsread.InodeRef) []uint64 {
	var dirs []uint64
	for _, r := range refs {
		if len(dirs) == 0 || dirs[len(dirs)-1] != r.Parent {
			dirs = append(dirs, r.Parent)
		}
	}
	return dirs
}
