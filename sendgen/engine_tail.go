package sendgen

import (
	"sendfs/btrfsread"
)

// sendGrownTail sends the data an existing regular file gains when it grows
// from parentSize over the tail of an extent that is unchanged from the
// parent: the parent's copy ends at parentSize, so the truncate that grows it
// would fill with zeros what the send tree has as data. A file only grows
// that way between snapshots taken in reverse order (btrfs zeroes the tail
// of the last block when a file is truncated up); the kernel 6.18 sends only
// the truncate there, and the received file has zeros in place of data.
func (s *sendCtx) sendGrownTail(parentSize uint64) error {
	return extentsFromPrevious(s.send, s.curIno, parentSize, func(k uint64, fe *btrfsread.FileExtent) error {
		if k >= s.curSize {
			return btrfsread.ErrStopWalk
		}
		start, end := max(k, parentSize), min(s.extentEnd(k, fe), s.curSize)
		if start >= end || fe.Type == btrfsread.ExtentPrealloc || (fe.Type == btrfsread.ExtentReg && fe.DiskBytenr == 0) {
			return nil
		}
		if fe.Type == btrfsread.ExtentReg {
			same, err := s.isExtentUnchanged(k, fe)
			if err != nil || !same {
				return err // a changed extent was sent whole
			}
		}
		if err := s.sendExtentData(k, fe, start, end-start); err != nil {
			return err
		}
		s.curNextWriteOffset = max(s.curNextWriteOffset, end)
		s.pastKernel = true
		return nil
	})
}
