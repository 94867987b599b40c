package btrfsread

import (
	"bytes"
	"errors"
)

// ChangeKind says how an item differs between two trees.
type ChangeKind int

const (
	Added   ChangeKind = iota // only in the left tree
	Deleted                   // only in the right tree
	Changed                   // in both, different bytes
	Same                      // in both, same bytes, but in blocks not shared
)

// Change is one reported difference. Left is nil for Deleted, Right for Added.
type Change struct {
	Kind  ChangeKind
	Key   Key
	Left  []byte
	Right []byte
}

// compareSide is one tree's position in CompareTrees: nodes[l] and slots[l]
// hold the block and slot at level l, from level down to the root's level.
type compareSide struct {
	fs        *FS
	nodes     [maxTreeLevel]*node
	slots     [maxTreeLevel]int
	level     int // current level
	rootLevel int
	done      bool
}

func newCompareSide(t Tree) (*compareSide, error) {
	root, err := t.root()
	if err != nil {
		return nil, err
	}
	s := &compareSide{fs: t.fs, level: int(root.level), rootLevel: int(root.level)}
	s.nodes[s.level] = root
	s.done = root.nritems == 0
	return s, nil
}

func (s *compareSide) key() Key { return s.nodes[s.level].key(s.slots[s.level]) }

func (s *compareSide) ptr() (uint64, uint64) { return s.nodes[s.level].ptr(s.slots[s.level]) }

func (s *compareSide) item() Item { return s.nodes[0].item(s.slots[0]) }

// advance moves to the next position: into the child at an internal node
// when down is allowed, else to the next slot, climbing out of exhausted
// nodes (the kernel's tree_advance).
func (s *compareSide) advance(down bool) error {
	if s.level > 0 && down {
		n, err := s.fs.child(s.nodes[s.level], s.slots[s.level])
		if err != nil {
			return err
		}
		s.level--
		s.nodes[s.level], s.slots[s.level] = n, 0
		return nil
	}
	s.slots[s.level]++
	for s.slots[s.level] >= s.nodes[s.level].nritems {
		if s.level == s.rootLevel {
			s.done = true
			return nil
		}
		s.nodes[s.level] = nil
		s.level++
		s.slots[s.level]++
	}
	return nil
}

// CompareTrees walks left and right together in key order and calls fn for
// every item in blocks that are not shared; subtrees whose block pointer and
// generation are equal on both sides are skipped, as the kernel's
// btrfs_compare_trees does. fn may return ErrStopWalk.
func CompareTrees(left, right Tree, fn func(Change) error) error {
	err := compareTrees(left, right, fn)
	if errors.Is(err, ErrStopWalk) {
		return nil
	}
	return err
}

func compareTrees(left, right Tree, fn func(Change) error) error {
	l, err := newCompareSide(left)
	if err != nil {
		return err
	}
	r, err := newCompareSide(right)
	if err != nil {
		return err
	}
	for !l.done || !r.done {
		// Each branch sets how the sides move next: nil = stay,
		// else whether the move may descend.
		var advL, advR *bool
		yes, no := true, false
		switch {
		case r.done:
			if l.level == 0 {
				it := l.item()
				if err := fn(Change{Kind: Added, Key: it.Key, Left: it.Data}); err != nil {
					return err
				}
			}
			advL = &yes
		case l.done:
			if r.level == 0 {
				it := r.item()
				if err := fn(Change{Kind: Deleted, Key: it.Key, Right: it.Data}); err != nil {
					return err
				}
			}
			advR = &yes
		case l.level == 0 && r.level == 0:
			li, ri := l.item(), r.item()
			switch c := li.Key.Compare(ri.Key); {
			case c < 0:
				err = fn(Change{Kind: Added, Key: li.Key, Left: li.Data})
				advL = &yes
			case c > 0:
				err = fn(Change{Kind: Deleted, Key: ri.Key, Right: ri.Data})
				advR = &yes
			default:
				kind := Changed
				if bytes.Equal(li.Data, ri.Data) {
					kind = Same
				}
				err = fn(Change{Kind: kind, Key: li.Key, Left: li.Data, Right: ri.Data})
				advL, advR = &yes, &yes
			}
			if err != nil {
				return err
			}
		case l.level == r.level:
			switch c := l.key().Compare(r.key()); {
			case c < 0:
				advL = &yes
			case c > 0:
				advR = &yes
			default:
				lb, lg := l.ptr()
				rb, rg := r.ptr()
				if lb == rb && lg == rg {
					advL, advR = &no, &no // shared subtree: skip it
				} else {
					advL, advR = &yes, &yes
				}
			}
		case l.level < r.level:
			advR = &yes
		default:
			advL = &yes
		}
		if advL != nil && !l.done {
			if err := l.advance(*advL); err != nil {
				return err
			}
		}
		if advR != nil && !r.done {
			if err := r.advance(*advR); err != nil {
				return err
			}
		}
	}
	return nil
}
