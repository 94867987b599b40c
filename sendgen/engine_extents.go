package sendgen

import (
	"fmt"

	"sendfs/btrfsread"
)

// The file data per WRITE: the kernel's send buffer less 16 KiB for the
// command's other attributes. The buffer is 64 KiB in protocol 1 and, from
// protocol 2 on, 16 KiB plus the largest compressed extent (128 KiB),
// rounded to 4 KiB pages.
const (
	maxWriteV1 = 48 << 10
	maxWriteV2 = 128 << 10
)

// maxWrite is the file data per WRITE of the stream's protocol.
func (s *sendCtx) maxWrite() uint64 {
	if s.opts.protocol() >= 2 {
		return maxWriteV2
	}
	return maxWriteV1
}

// extentEnd is the file offset just past the extent at key offset off.
// Inline extents count to the next sector boundary, as in the kernel.
func (s *sendCtx) extentEnd(off uint64, fe *btrfsread.FileExtent) uint64 {
	if fe.Type == btrfsread.ExtentInline {
		return alignUp(off+fe.RamBytes, s.sectorSize)
	}
	return off + fe.NumBytes
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) / a * a }

// changedExtent handles a new or changed extent item of the current inode.
func (s *sendCtx) changedExtent(c btrfsread.Change) error {
	if s.curNewGen || s.curDeleted || c.Kind == btrfsread.Deleted {
		return nil
	}
	fe, err := btrfsread.ParseFileExtent(c.Left)
	if err != nil {
		return err
	}
	return s.processExtent(c.Key.Offset, &fe)
}

// processAllExtents sends every extent of the current inode, as new.
func (s *sendCtx) processAllExtents() error {
	return s.send.Extents(s.curIno, 0, func(off uint64, fe *btrfsread.FileExtent) error {
		return s.processExtent(off, fe)
	})
}

// processExtent sends the data of one extent item at file offset off, unless
// it is unchanged from the parent, and any hole before it.
func (s *sendCtx) processExtent(off uint64, fe *btrfsread.FileExtent) error {
	if isSymlink(s.curMode) {
		return nil
	}
	key := btrfsread.Key{ObjectID: s.curIno, Type: btrfsread.ExtentDataKey, Offset: off}
	if s.parent != nil && !s.curNew {
		same, err := s.isExtentUnchanged(off, fe)
		if err != nil {
			return err
		}
		if same {
			return s.maybeSendHole(key, fe)
		}
	} else if fe.IsHole() {
		// New inode: prealloc and holes are simply not written.
		return nil
	}
	src, err := s.findExtentClone(off, fe)
	if err != nil {
		return err
	}
	if err := s.sendWriteOrClone(off, fe, src); err != nil {
		return err
	}
	return s.maybeSendHole(key, fe)
}

// sendWriteOrClone sends the extent's data up to i_size, cloned from src
// where possible.
func (s *sendCtx) sendWriteOrClone(off uint64, fe *btrfsread.FileExtent, src *cloneSource) error {
	end := min(s.extentEnd(off, fe), s.curSize)
	if off >= end {
		return nil
	}
	clone, err := s.canCloneRange(src, off, end)
	if err != nil {
		return err
	}
	if clone {
		err = s.cloneRange(src, off, fe, off, end-off)
	} else {
		err = s.sendExtentData(off, fe, off, end-off)
	}
	if err != nil {
		return err
	}
	s.curNextWriteOffset = end
	return nil
}

// canCloneRange decides whether [off, end) may be cloned from src: the
// receiver's reflink needs a sector-aligned end, or an end at the i_size of
// both files (kernel 6.11+). For the latter an existing file is first
// truncated to off, so that the clone ends at its current EOF.
func (s *sendCtx) canCloneRange(src *cloneSource, off, end uint64) (bool, error) {
	if src == nil {
		return false, nil
	}
	if end%s.sectorSize == 0 {
		return true, nil
	}
	if end != s.curSize {
		return false, nil
	}
	srcInode, err := src.root.Inode(src.ino)
	if err != nil {
		return false, fmt.Errorf("clone source inode %d: %w", src.ino, err)
	}
	if src.offset+(end-off) != srcInode.Size {
		return false, nil
	}
	if s.parent != nil {
		if err := s.sendTruncate(s.curIno, s.curGen, off); err != nil {
			return false, err
		}
	}
	return true, nil
}

// sendExtentData sends [offset, offset+length) of the file, whose data lies
// in extent fe at key offset extOff (the kernel's send_extent_data): as
// UPDATE_EXTENT without data, as one ENCODED_WRITE of the compressed extent
// when that is allowed and the range covers at least its stored size, else
// as WRITE commands of decompressed data.
func (s *sendCtx) sendExtentData(extOff uint64, fe *btrfsread.FileExtent, offset, length uint64) error {
	if s.opts.NoData {
		return s.sendUpdateExtent(offset, length)
	}
	if s.opts.CompressedData && fe.Compression != btrfsread.CompressNone {
		stored := fe.DiskNumBytes
		if fe.Type == btrfsread.ExtentInline {
			stored = uint64(len(fe.Inline))
		}
		if stored <= length {
			return s.sendEncodedWrite(extOff, fe, offset, length)
		}
	}
	p, err := s.curPath(s.curIno, s.curGen)
	if err != nil {
		return err
	}
	maxWrite := s.maxWrite()
	for sent := uint64(0); sent < length; {
		n := min(length-sent, maxWrite)
		c := s.begin(CmdWrite)
		c.Bytes(AttrPath, p)
		c.U64(AttrFileOffset, offset+sent)
		c.Data = &DataRef{
			Subvol:     s.send,
			Ino:        s.curIno,
			FileOffset: offset + sent,
			Extent:     *fe,
			Offset:     offset + sent - extOff,
			Len:        uint32(n),
		}
		if err := s.emit(); err != nil {
			return err
		}
		sent += n
	}
	return nil
}

// sendHole makes [curLastExtent, end) of an existing file a hole: from
// protocol 2 on by punching it (FALLOCATE, even past i_size, as the kernel
// does since 6.17), else by writing zeros up to i_size.
func (s *sendCtx) sendHole(end uint64) error {
	offset := s.curLastExtent
	if s.opts.protocol() >= 2 {
		return s.sendFallocate(fallocPunchHole|fallocKeepSize, offset, end-offset)
	}
	if offset >= s.curSize {
		return nil
	}
	end = min(end, s.curSize)
	if s.opts.NoData {
		return s.sendUpdateExtent(offset, end-offset)
	}
	p, err := s.curPath(s.curIno, s.curGen)
	if err != nil {
		return err
	}
	maxWrite := s.maxWrite()
	for offset < end {
		n := min(end-offset, maxWrite)
		c := s.begin(CmdWrite)
		c.Bytes(AttrPath, p)
		c.U64(AttrFileOffset, offset)
		c.Data = &DataRef{Subvol: s.send, Ino: s.curIno, FileOffset: offset, Len: uint32(n), Zero: true}
		if err := s.emit(); err != nil {
			return err
		}
		offset += n
	}
	s.curNextWriteOffset = offset
	return nil
}

// isExtentUnchanged reports whether the parent's extent items covering the
// same file range point to the same data (same disk extent, offsets and
// generation), so nothing needs to be sent. It follows the kernel's
// is_extent_unchanged case by case, including its conservative answer when
// the parent has a gap right after the matched items, so that streams stay
// identical to the kernel's.
func (s *sendCtx) isExtentUnchanged(off uint64, left *btrfsread.FileExtent) (bool, error) {
	if left.Type != btrfsread.ExtentReg {
		return false, nil
	}
	leftEnd := off + left.NumBytes
	leftIsHole := left.DiskBytenr == 0
	result, first, seen := false, true, false
	var prevEnd uint64 // end of the last matched parent item
	err := extentsFromPrevious(s.parent, s.curIno, off, func(k uint64, right *btrfsread.FileExtent) error {
		seen = true
		if first && k > off {
			// Nothing in the parent covers off.
			result = leftIsHole
			return btrfsread.ErrStopWalk
		}
		if !first {
			if k != prevEnd {
				result = false // a gap in the parent
				return btrfsread.ErrStopWalk
			}
			if k >= leftEnd {
				result = true
				return btrfsread.ErrStopWalk
			}
		}
		if right.Type != btrfsread.ExtentReg && right.Type != btrfsread.ExtentInline {
			return btrfsread.ErrStopWalk
		}
		rightLen := right.NumBytes
		if right.Type == btrfsread.ExtentInline {
			rightLen = alignUp(right.RamBytes, pageSize)
		}
		if first && k+rightLen <= off {
			// The parent's last extent ends before ours: the file grew.
			result = leftIsHole
			return btrfsread.ErrStopWalk
		}
		first = false
		if right.Type == btrfsread.ExtentInline {
			return btrfsread.ErrStopWalk
		}
		leftOffset, rightOffset := left.Offset, right.Offset
		if k < off {
			rightOffset += off - k
		} else {
			leftOffset += k - off
		}
		if left.DiskBytenr != right.DiskBytenr || leftOffset != rightOffset || left.Generation != right.Generation {
			return btrfsread.ErrStopWalk
		}
		prevEnd = k + rightLen
		result = prevEnd >= leftEnd // if no item follows
		return nil
	})
	if err != nil && !notFound(err) {
		return false, err
	}
	if !seen {
		// The parent has no extent at or after off for this inode.
		return leftIsHole, nil
	}
	return result, nil
}

// extentsFromPrevious calls fn for ino's extent items in root from the last
// one at or before off (whether or not it reaches off, as the kernel's
// search for the previous slot does), in offset order.
func extentsFromPrevious(root *btrfsread.Subvolume, ino, off uint64, fn func(k uint64, fe *btrfsread.FileExtent) error) error {
	t := root.Tree()
	from := btrfsread.Key{ObjectID: ino, Type: btrfsread.ExtentDataKey, Offset: off}
	if prev, err := t.SearchBefore(from); err == nil && prev.Key.ObjectID == ino && prev.Key.Type == btrfsread.ExtentDataKey {
		from = prev.Key
	} else if err != nil && !notFound(err) {
		return err
	}
	to := btrfsread.Key{ObjectID: ino, Type: btrfsread.ExtentDataKey, Offset: ^uint64(0)}
	return t.Walk(from, to, func(it btrfsread.Item) error {
		fe, err := btrfsread.ParseFileExtent(it.Data)
		if err != nil {
			return fmt.Errorf("extent %v: %w", it.Key, err)
		}
		return fn(it.Key.Offset, &fe)
	})
}

// pageSize is the kernel page size the kernel's send assumes for inline
// extents in is_extent_unchanged.
const pageSize = 4096

// getLastExtent sets curLastExtent to the end of the last extent item of the
// current inode at or before offset.
func (s *sendCtx) getLastExtent(offset uint64) error {
	s.curLastExtent = 0
	it, err := s.send.Tree().SearchBefore(btrfsread.Key{ObjectID: s.curIno, Type: btrfsread.ExtentDataKey, Offset: offset})
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if it.Key.ObjectID != s.curIno || it.Key.Type != btrfsread.ExtentDataKey {
		return nil
	}
	fe, err := btrfsread.ParseFileExtent(it.Data)
	if err != nil {
		return err
	}
	s.curLastExtent = s.extentEnd(it.Key.Offset, &fe)
	return nil
}

// rangeIsHoleInParent reports whether [start, end) of the current inode is a
// hole (no extents, or explicit holes only) in the parent tree.
func (s *sendCtx) rangeIsHoleInParent(start, end uint64) (bool, error) {
	hole := true
	err := s.parent.Extents(s.curIno, start, func(k uint64, fe *btrfsread.FileExtent) error {
		if k >= end {
			return btrfsread.ErrStopWalk
		}
		if s.extentEnd(k, fe) <= start {
			return nil
		}
		if fe.Type == btrfsread.ExtentInline || fe.DiskBytenr != 0 {
			hole = false
			return btrfsread.ErrStopWalk
		}
		return nil
	})
	if err != nil && !notFound(err) {
		return false, err
	}
	return hole, nil
}

// maybeSendHole sends the hole between the previous extent of an existing
// file and this one, when the parent does not have the same hole.
func (s *sendCtx) maybeSendHole(k btrfsread.Key, fe *btrfsread.FileExtent) error {
	if s.curIno != k.ObjectID || !s.needSendHole() {
		return nil
	}
	// Whole leaves of unchanged extents may have been skipped by the
	// compare: recompute the last extent end whenever there is a gap.
	if k.Offset > 0 && (s.curLastExtent == unknownOffset || s.curLastExtent < k.Offset) {
		if err := s.getLastExtent(k.Offset - 1); err != nil {
			return err
		}
	}
	if err := s.sendHoleUpTo(k.Offset); err != nil {
		return err
	}
	s.curLastExtent = s.extentEnd(k.Offset, fe)
	return nil
}

// sendTrailingHole sends the hole between the file's last extent and its
// end (the kernel's 6.8 rule), for a file that exists at the receiver.
func (s *sendCtx) sendTrailingHole() error {
	if !s.needSendHole() {
		return nil
	}
	if s.curLastExtent == unknownOffset || s.curLastExtent < s.curSize {
		if err := s.getLastExtent(unknownOffset); err != nil {
			return err
		}
	}
	return s.sendHoleUpTo(s.curSize)
}

// sendHoleUpTo sends the hole from the end of the last extent sent to end,
// unless the parent has a hole there too.
func (s *sendCtx) sendHoleUpTo(end uint64) error {
	if s.curLastExtent == unknownOffset || s.curLastExtent >= end {
		return nil
	}
	hole, err := s.rangeIsHoleInParent(s.curLastExtent, end)
	if err != nil || hole {
		return err
	}
	return s.sendHole(end)
}
