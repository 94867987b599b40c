package sendgen

import (
	"fmt"

	"sendfs/btrfsread"
)

// A stream of a filesystem that is mounted elsewhere may meet blocks that
// a newer commit has moved (a balance) or reused: they fail validation.
// Every pass over the stream (counting, the index, a prefix, WriteTo) then
// runs again on the newest commit, with the subvolumes looked up again by
// id. Read-only snapshots do not change, only where their blocks are, so
// the bytes are the same; the checks in atView refuse a pair that did
// change, and WriteTo checks that what it already wrote is what the new
// pass generates (writer.go).

// pair returns the subvolumes the next pass reads.
func (s *Stream) pair() (child, parent *btrfsread.Subvolume) {
	s.pairMu.Lock()
	defer s.pairMu.Unlock()
	return s.child, s.parent
}

// withRefresh runs pass; when it fails in a way a newer commit explains,
// the pair moves to the newest commit and pass runs again.
func (s *Stream) withRefresh(pass func() error) error {
	child, _ := s.pair()
	if child.FS() == nil {
		return pass() // synthetic subvolumes of tests
	}
	return child.FS().Retry(func(v *btrfsread.FS) error {
		s.pairMu.Lock()
		c, p, err := atView(s.child, s.parent, v)
		if err == nil {
			s.child, s.parent = c, p
		}
		s.pairMu.Unlock()
		if err != nil {
			return err
		}
		return pass()
	})
}

// atView returns child and parent as view v shows them, keeping the names
// the stream was described with. A subvolume that is gone is reported as
// deleted; one whose contents changed (it was made writable and written)
// is refused.
func atView(child, parent *btrfsread.Subvolume, v *btrfsread.FS) (*btrfsread.Subvolume, *btrfsread.Subvolume, error) {
	c, err := sameSubvol(child, v)
	if err != nil || parent == nil {
		return c, nil, err
	}
	p, err := sameSubvol(parent, v)
	return c, p, err
}

func sameSubvol(sv *btrfsread.Subvolume, v *btrfsread.FS) (*btrfsread.Subvolume, error) {
	if sv.FS() == v {
		return sv, nil
	}
	n, err := sv.In(v)
	if err != nil {
		return nil, err
	}
	a, b := &sv.Root, &n.Root
	if a.CTransid != b.CTransid || a.ReceivedUUID != b.ReceivedUUID || a.STransid != b.STransid || a.Flags&btrfsread.RootSubvolReadOnly != b.Flags&btrfsread.RootSubvolReadOnly {
		return nil, fmt.Errorf("subvolume %s changed while its stream was generated", subvolName(sv))
	}
	cp := *n
	cp.Name, cp.Path = sv.Name, sv.Path
	return &cp, nil
}
