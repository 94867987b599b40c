package sendgen

import (
	"bytes"

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
		sent, err := s.extentWasSent(k, fe)
		if err != nil || sent {
			return err // a changed extent was sent whole
		}
		if err := s.sendExtentData(k, fe, start, end-start); err != nil {
			return err
		}
		s.curNextWriteOffset = max(s.curNextWriteOffset, end)
		s.pastKernel = true
		return nil
	})
}

// extentWasSent reports whether the extent item at key offset k of the
// current inode was sent: an item identical in the parent is not even
// compared, and a changed regular extent is skipped when it still points to
// the same data.
func (s *sendCtx) extentWasSent(k uint64, fe *btrfsread.FileExtent) (bool, error) {
	key := btrfsread.Key{ObjectID: s.curIno, Type: btrfsread.ExtentDataKey, Offset: k}
	left, err := s.send.Tree().Search(key)
	if err != nil {
		return false, err
	}
	right, err := s.parent.Tree().Search(key)
	switch {
	case err == nil && bytes.Equal(left.Data, right.Data):
		return false, nil
	case err != nil && !notFound(err):
		return false, err
	case fe.Type != btrfsread.ExtentReg:
		return true, nil
	}
	same, err := s.isExtentUnchanged(k, fe)
	return !same, err
}
