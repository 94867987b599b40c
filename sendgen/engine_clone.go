package sendgen

import (
	"cmp"
	"fmt"
	"slices"

	"sendfs/btrfsread"
)

// Clone detection: when the data of an extent is also referenced by a file
// the receiver already has (an earlier inode of the send tree, or any file
// of the parent snapshot), send CLONE instead of WRITE, as the kernel does.
// The kernel walks backrefs; here each backref candidate is verified by
// looking the file extent item up in the clone root itself, which also finds
// items reached through leaves shared between snapshots.

// maxExtentRefs: above this many references the kernel stops looking for
// clone sources (backref walking gets too expensive) and writes.
const maxExtentRefs = 1024

// cloneMaxAlign is the largest sector size a receiving filesystem may have:
// an unaligned end-of-file block is never cloned into the middle of a file.
const cloneMaxAlign = 64 << 10

// cloneSource is a place the receiver already holds an extent's data.
type cloneSource struct {
	root     *btrfsread.Subvolume
	ino      uint64
	offset   uint64 // file offset in the source inode
	numBytes uint64 // length of the source's file extent item
}

// cloneRoots returns the roots clones may come from, sorted by id: the send
// root, the parent and the clone sources, each once.
func (s *sendCtx) cloneRoots() []*btrfsread.Subvolume {
	if s.roots != nil {
		return s.roots
	}
	roots := []*btrfsread.Subvolume{s.send}
	if s.parent != nil {
		roots = append(roots, s.parent)
	}
	roots = append(roots, s.opts.CloneSources...)
	// Stable: of two equal roots the send root or parent, listed first, stays.
	slices.SortStableFunc(roots, func(a, b *btrfsread.Subvolume) int { return cmp.Compare(a.ID, b.ID) })
	s.roots = slices.CompactFunc(roots, func(a, b *btrfsread.Subvolume) bool { return a.ID == b.ID })
	return s.roots
}

// candidateItem is a file extent item pointing to the extent being sent.
type candidateItem struct {
	root *btrfsread.Subvolume
	ino  uint64
	key  uint64 // key offset
	fe   btrfsread.FileExtent
}

// findExtentClone picks the best clone source for the extent at file offset
// off of the current inode, or nil.
func (s *sendCtx) findExtentClone(off uint64, fe *btrfsread.FileExtent) (*cloneSource, error) {
	if off >= s.curSize || fe.Type == btrfsread.ExtentInline || fe.DiskBytenr == 0 {
		return nil, nil
	}
	if s.walked != nil && !s.walked.mayHave(fe.DiskBytenr) && s.curNextWriteOffset <= off {
		// A full send without clone sources can only clone from the
		// items it has walked past: those of earlier inodes, and those
		// of this one before off that end where it has written.
		// None of them points to this extent.
		return nil, nil
	}
	roots := s.cloneRoots()
	if len(roots) == 1 {
		// Most extents have one reference, ours, which one search of
		// the extent tree tells without reading (and caching) the
		// backrefs.
		refs, err := s.send.FS().ExtentRefs(fe.DiskBytenr)
		switch {
		case notFound(err) || err == nil && refs == 1:
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("references of extent at %d: %w", fe.DiskBytenr, err)
		}
	}
	refs, brs, err := s.send.FS().DataBackrefs(fe.DiskBytenr)
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backrefs of extent at %d: %w", fe.DiskBytenr, err)
	}
	if refs > maxExtentRefs {
		return nil, nil
	}
	cands, err := s.cloneCandidates(roots, fe.DiskBytenr, brs)
	if err != nil {
		return nil, err
	}
	extentLen := fe.NumBytes
	if off+fe.NumBytes >= s.curSize {
		extentLen = s.curSize - off
	}
	compressed := fe.Compression != btrfsread.CompressNone
	best := map[uint64]*cloneSource{} // by root id
	for _, c := range cands {
		srcOff := c.key
		if !compressed {
			if fe.Offset < c.fe.Offset || fe.Offset >= c.fe.Offset+c.fe.NumBytes {
				continue
			}
			srcOff = c.key + fe.Offset - c.fe.Offset
		}
		if c.root == s.send {
			if c.ino == s.curIno && srcOff == off {
				continue // our own reference
			}
			if c.ino > s.curIno {
				continue // not at the receiver yet
			}
			if c.ino == s.curIno && srcOff+extentLen > s.curNextWriteOffset {
				continue
			}
		}
		cur := best[c.root.ID]
		if cur == nil || c.fe.NumBytes > cur.numBytes {
			best[c.root.ID] = &cloneSource{root: c.root, ino: c.ino, offset: srcOff, numBytes: c.fe.NumBytes}
			if c.fe.NumBytes >= extentLen {
				break // a perfect candidate ends the kernel's backref walk
			}
		}
	}
	var found *cloneSource
	for _, r := range roots {
		if c := best[r.ID]; c != nil && (found == nil || c.numBytes > found.numBytes) {
			found = c
			if c.numBytes >= extentLen {
				break
			}
		}
	}
	return found, nil
}

// cloneCandidates resolves backrefs to the file extent items of the clone
// roots that point to the extent at bytenr, in a deterministic order.
func (s *sendCtx) cloneCandidates(roots []*btrfsread.Subvolume, bytenr uint64, brs []btrfsread.DataBackref) ([]candidateItem, error) {
	var cands []candidateItem
	seen := map[[3]uint64]bool{}
	add := func(root *btrfsread.Subvolume, ino, key uint64, fe *btrfsread.FileExtent) {
		id := [3]uint64{root.ID, ino, key}
		if !seen[id] {
			seen[id] = true
			cands = append(cands, candidateItem{root: root, ino: ino, key: key, fe: *fe})
		}
	}
	shared, err := s.sharedItems(bytenr, brs)
	if err != nil {
		return nil, err
	}
	for _, it := range shared {
		for _, root := range roots {
			if ok, err := s.hasExtentItem(root, it.Key, &it.Extent); err != nil {
				return nil, err
			} else if ok {
				add(root, it.Key.ObjectID, it.Key.Offset, &it.Extent)
			}
		}
	}
	for _, br := range brs {
		if br.Parent != 0 {
			continue
		}
		// A direct ref names (ino, file offset - data offset); the same
		// items may be reachable from every snapshot sharing the leaf. The
		// offset underflows when a file offset is below the data offset.
		start, limit := br.Offset, br.Offset+maxExtentSpan
		if limit < start {
			start = 0
		}
		for _, root := range roots {
			err := root.Extents(br.Ino, start, func(k uint64, fe *btrfsread.FileExtent) error {
				if k < start {
					return nil
				}
				if k > limit {
					return btrfsread.ErrStopWalk
				}
				if fe.Type != btrfsread.ExtentInline && fe.DiskBytenr == bytenr && k-fe.Offset == br.Offset {
					add(root, br.Ino, k, fe)
				}
				return nil
			})
			if err != nil && !notFound(err) {
				return nil, err
			}
		}
	}
	// The kernel's backref walk meets the items of a leaf from the last to
	// the first and keeps the first best candidate: visit candidates in
	// that order, the send root's first.
	slices.SortStableFunc(cands, func(a, b candidateItem) int {
		if (a.root == s.send) != (b.root == s.send) {
			if a.root == s.send {
				return -1
			}
			return 1
		}
		switch {
		case a.root.ID != b.root.ID:
			return cmp.Compare(a.root.ID, b.root.ID)
		case a.ino != b.ino:
			return cmp.Compare(b.ino, a.ino)
		}
		return cmp.Compare(b.key, a.key)
	})
	return cands, nil
}

// sharedItems returns the file extent items pointing to the extent at
// bytenr in the leaves its shared backrefs name, each distinct item once:
// those leaves are often versions of one leaf kept by many snapshots, and
// an item is looked up in each clone root only once.
func (s *sendCtx) sharedItems(bytenr uint64, brs []btrfsread.DataBackref) ([]btrfsread.LeafFileExtent, error) {
	type itemID struct {
		key              btrfsread.Key
		offset, numBytes uint64
	}
	var out []btrfsread.LeafFileExtent
	seen := map[itemID]bool{}
	for _, br := range brs {
		if br.Parent == 0 {
			continue
		}
		leaf, err := s.send.FS().LeafFileExtents(br.Parent)
		if err != nil {
			return nil, err
		}
		for _, it := range btrfsread.ExtentsAt(leaf, bytenr) {
			// hasExtentItem compares these: items equal in them are
			// the same candidate.
			id := itemID{it.Key, it.Extent.Offset, it.Extent.NumBytes}
			if !seen[id] {
				seen[id] = true
				out = append(out, it)
			}
		}
	}
	return out, nil
}

// extentFilter is a Bloom filter of data extent addresses, of fixed size: it
// answers that an address was not added, or that it may have been. It
// stays useful up to a few hundred thousand addresses; past that it says
// "may" more and more often, which costs a backref search, never a clone.
type extentFilter []uint64

const (
	extentFilterBits  = 1 << 21 // 256 KiB
	extentFilterProbe = 21      // bits of the hash per probe
)

func newExtentFilter() extentFilter { return make(extentFilter, extentFilterBits/64) }

// bits are the filter's three bit positions for bytenr.
func (extentFilter) bits(bytenr uint64) [3]uint64 {
	// splitmix64's finalizer: addresses are sector multiples.
	h := bytenr
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	h ^= h >> 31
	const mask = extentFilterBits - 1
	return [3]uint64{h & mask, h >> extentFilterProbe & mask, h >> (2 * extentFilterProbe) & mask}
}

// addItem adds the data extent of a file extent item (nil f: nothing).
func (f extentFilter) addItem(it btrfsread.Item) error {
	if f == nil || it.Key.Type != btrfsread.ExtentDataKey {
		return nil
	}
	fe, err := btrfsread.ParseFileExtent(it.Data)
	if err != nil || fe.Type == btrfsread.ExtentInline || fe.DiskBytenr == 0 {
		return err
	}
	for _, b := range f.bits(fe.DiskBytenr) {
		f[b/64] |= 1 << (b % 64)
	}
	return nil
}

// mayHave reports whether the extent at bytenr may have been added.
func (f extentFilter) mayHave(bytenr uint64) bool {
	for _, b := range f.bits(bytenr) {
		if f[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

// maxExtentSpan bounds how far past a backref's offset its items can start:
// a data extent is at most 128 MiB.
const maxExtentSpan = 128 << 20

// hasExtentItem reports whether root holds the same file extent item at k.
func (s *sendCtx) hasExtentItem(root *btrfsread.Subvolume, k btrfsread.Key, fe *btrfsread.FileExtent) (bool, error) {
	it, err := root.Tree().Search(k)
	if notFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	other, err := btrfsread.ParseFileExtent(it.Data)
	if err != nil {
		return false, fmt.Errorf("extent item %v of subvolume %d: %w", k, root.ID, err)
	}
	return other.DiskBytenr == fe.DiskBytenr && other.Offset == fe.Offset && other.NumBytes == fe.NumBytes, nil
}

// cloneRange sends [offset, offset+length) of the current inode, whose data
// is extent fe at key offset extOff, as CLONEs from src where the source
// really has the same data, and as WRITEs elsewhere (the kernel's
// clone_range).
func (s *sendCtx) cloneRange(src *cloneSource, extOff uint64, fe *btrfsread.FileExtent, offset, length uint64) error {
	if src.offset == 0 && length == s.sectorSize {
		// The receiver may store such a block inline, and inline extents
		// cannot be cloned.
		return s.sendExtentData(extOff, fe, offset, length)
	}
	srcInode, err := src.root.Inode(src.ino)
	if err != nil {
		return fmt.Errorf("clone source inode %d: %w", src.ino, err)
	}
	srcSize := srcInode.Size
	dataOffset := fe.Offset + offset - extOff
	srcOff := src.offset
	// advance moves past n bytes sent (in the file, the source and the
	// extent) and reports whether the range is done.
	advance := func(n uint64) bool {
		length -= n
		offset, srcOff, dataOffset = offset+n, srcOff+n, dataOffset+n
		return length == 0
	}
	err = src.root.Extents(src.ino, srcOff, func(k uint64, sfe *btrfsread.FileExtent) error {
		extLen := sfe.NumBytes
		if sfe.Type == btrfsread.ExtentInline {
			extLen = alignUp(sfe.RamBytes, pageSize)
		}
		if k+extLen <= srcOff {
			return nil
		}
		if k > srcOff {
			// An implicit hole in the source: write that part.
			holeLen := min(k-srcOff, length)
			if err := s.sendExtentData(extOff, fe, offset, holeLen); err != nil {
				return err
			}
			if advance(holeLen) {
				return btrfsread.ErrStopWalk
			}
		}
		if k >= srcOff+length || k >= srcSize {
			return btrfsread.ErrStopWalk
		}
		crossedSrcSize := false
		if k+extLen > srcSize {
			extLen = srcSize - k
			crossedSrcSize = true
		}
		cloneDataOffset := sfe.Offset
		sameExtent := sfe.Type != btrfsread.ExtentInline && sfe.DiskBytenr == fe.DiskBytenr
		if sameExtent {
			srcOff = k
			if cloneDataOffset < dataOffset && cloneDataOffset+extLen > dataOffset {
				d := dataOffset - cloneDataOffset
				extLen -= d
				cloneDataOffset += d
				srcOff += d
			}
		}
		cloneLen := min(extLen, length)
		switch {
		case sameExtent && cloneDataOffset == dataOffset:
			srcEnd := srcOff + cloneLen
			if srcEnd == srcSize && srcEnd%cloneMaxAlign != 0 && offset+cloneLen < s.curSize {
				// Never clone an unaligned EOF block into the middle of
				// a file: clone the aligned part and write the tail.
				aligned := (srcEnd - srcOff) / cloneMaxAlign * cloneMaxAlign
				if aligned > 0 {
					if err := s.sendClone(offset, aligned, src, srcOff); err != nil {
						return err
					}
				}
				if err := s.sendExtentData(extOff, fe, offset+aligned, cloneLen-aligned); err != nil {
					return err
				}
			} else if err := s.sendClone(offset, cloneLen, src, srcOff); err != nil {
				return err
			}
		case crossedSrcSize && cloneLen < length:
			return btrfsread.ErrStopWalk
		default:
			if err := s.sendExtentData(extOff, fe, offset, cloneLen); err != nil {
				return err
			}
		}
		if advance(cloneLen) || src.root == s.send && src.ino == s.curIno && srcOff >= s.curNextWriteOffset {
			return btrfsread.ErrStopWalk
		}
		return nil
	})
	if err != nil && !notFound(err) {
		return err
	}
	if length > 0 {
		return s.sendExtentData(extOff, fe, offset, length)
	}
	return nil
}

// sendClone sends CLONE of length bytes at offset from src at srcOff.
func (s *sendCtx) sendClone(offset, length uint64, src *cloneSource, srcOff uint64) error {
	path, err := s.curPath(s.curIno, s.curGen)
	if err != nil {
		return err
	}
	var srcPath []byte
	if src.root == s.send {
		gen, err := s.inodes.gen(s.send, src.ino)
		if err != nil {
			return err
		}
		srcPath, err = s.curPath(src.ino, gen)
		if err != nil {
			return err
		}
	} else if srcPath, err = s.inodePath(src.root, src.ino); err != nil {
		return err
	}
	c := s.begin(CmdClone)
	c.U64(AttrFileOffset, offset)
	c.U64(AttrCloneLen, length)
	c.Bytes(AttrPath, path)
	c.UUID(AttrCloneUUID, streamUUID(&src.root.Root))
	c.U64(AttrCloneCtransid, src.root.Root.CTransid)
	c.Bytes(AttrClonePath, srcPath)
	c.U64(AttrCloneOffset, srcOff)
	return s.emit()
}

// inodePath is the path of ino's first name in root, from its top directory.
func (s *sendCtx) inodePath(root *btrfsread.Subvolume, ino uint64) ([]byte, error) {
	var comps [][]byte
	for depth := 0; ino != btrfsread.FirstFreeObjectID; depth++ {
		if depth > maxPathDepth {
			return nil, errDirLoop(ino)
		}
		ref, err := s.firstRef(root, ino)
		if err != nil {
			return nil, err
		}
		comps = append(comps, ref.name)
		ino = ref.parent
	}
	var p []byte
	for i := len(comps) - 1; i >= 0; i-- {
		p = joinPath(p, comps[i])
	}
	return p, nil
}
