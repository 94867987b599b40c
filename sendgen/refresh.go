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
func (s *Stream) pair() (child, parent *btrfsread.Subvolume, clones []*btrfsread.Subvolume) {
	s.pairMu.Lock()
	defer s.pairMu.Unlock()
	return s.child, s.parent, s.clones
}

// withRefresh runs pass; when it fails in a way a newer commit explains,
// the subvolumes move to the newest commit and pass runs again.
func (s *Stream) withRefresh(pass func() error) error {
	child, _, _ := s.pair()
	if child.FS() == nil {
		return pass() // synthetic subvolumes of tests
	}
	return child.FS().Retry(func(v *btrfsread.FS) error {
		s.pairMu.Lock()
		c, p, cl, err := atView(s.child, s.parent, s.clones, v)
		if err == nil {
			s.child, s.parent, s.clones = c, p, cl
		}
		s.pairMu.Unlock()
		if err != nil {
			return err
		}
		return pass()
	})
}

// moved reports whether parent or a clone source was found in another view
// of child's (live) filesystem than child.
func moved(child, parent *btrfsread.Subvolume, clones []*btrfsread.Subvolume) bool {
	for _, sv := range append([]*btrfsread.Subvolume{parent}, clones...) {
		if sv != nil && sv.FS() != child.FS() && sv.FS().SameFilesystem(child.FS()) {
			return true
		}
	}
	return false
}

// atView returns child, parent and the clone sources as view v shows them,
// keeping the names the stream was described with. A subvolume that is gone
// is reported as deleted; one whose contents changed (it was made writable
// and written) is refused.
func atView(child, parent *btrfsread.Subvolume, clones []*btrfsread.Subvolume, v *btrfsread.FS) (c, p *btrfsread.Subvolume, cl []*btrfsread.Subvolume, err error) {
	if c, err = sameSubvol(child, v); err != nil {
		return nil, nil, nil, err
	}
	if parent != nil {
		if p, err = sameSubvol(parent, v); err != nil {
			return nil, nil, nil, err
		}
	}
	for _, sv := range clones {
		n, err := sameSubvol(sv, v)
		if err != nil {
			return nil, nil, nil, err
		}
		cl = append(cl, n)
	}
	return c, p, cl, nil
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
		return nil, fmt.Errorf("subvolume %s changed while its stream was generated", sv)
	}
	cp := *n
	cp.Name, cp.Path = sv.Name, sv.Path
	return &cp, nil
}
