package btrfsread

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound reports a missing item, inode, path or subvolume.
	ErrNotFound = errors.New("not found")
	// ErrUnsupported reports a feature, profile or compression the reader
	// cannot handle; the wrapping message names it.
	ErrUnsupported = errors.New("unsupported")
	// ErrNotBtrfs reports a device without a valid btrfs superblock.
	ErrNotBtrfs = errors.New("not a btrfs filesystem")
	// ErrMissingDevice reports a filesystem member device that was not given.
	ErrMissingDevice = errors.New("missing device")
)

// CorruptError reports on-disk data that failed validation: a bad checksum,
// an impossible count, a bad name. Logical is the logical address of the
// block (0 when unknown).
type CorruptError struct {
	Logical uint64
	Reason  string
	Value   any
}

func (e *CorruptError) Error() string {
	msg := "corrupt btrfs metadata: " + e.Reason
	if e.Value != nil {
		msg += fmt.Sprintf(" (%v)", e.Value)
	}
	if e.Logical != 0 {
		msg += fmt.Sprintf(" at logical 0x%x", e.Logical)
	}
	return msg
}

// named names the leaf it was read from in err, a parser's error about it:
// the parsers see only the item's bytes, so their *CorruptError carries no
// address.
func (it Item) named(err error) error {
	if ce, ok := err.(*CorruptError); ok && ce.Logical == 0 && it.Leaf != 0 {
		named := *ce
		named.Logical = it.Leaf
		return &named
	}
	return err
}
