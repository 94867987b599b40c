package btrfsread

import "errors"

// Item is one leaf item. Data aliases a cached, immutable tree block: callers
// must not modify it; it stays valid as long as it is referenced.
type Item struct {
	Key  Key
	Data []byte
	// Leaf is the logical address of the leaf the item was read from (0 for
	// an item not read from a tree block), for the errors about it.
	Leaf uint64
}

// Tree is one B-tree, identified by its root block. A Tree value is cheap to
// copy and safe for concurrent use.
type Tree struct {
	fs         *FS
	id         uint64
	bytenr     uint64
	level      uint8
	generation uint64
}

// ID returns the tree (root) id.
func (t Tree) ID() uint64 { return t.id }

// treeAt builds a Tree from its root pointer (from a root item or the
// superblock).
func (fs *FS) treeAt(id, bytenr uint64, level uint8, generation uint64) Tree {
	return Tree{fs: fs, id: id, bytenr: bytenr, level: level, generation: generation}
}

// RootTree returns the tree of tree roots.
func (fs *FS) RootTree() Tree {
	return fs.treeAt(RootTreeID, fs.sb.root, fs.sb.rootLevel, fs.sb.generation)
}

// ErrStopWalk may be returned by a Walk callback to end the walk early
// without error.
var ErrStopWalk = stopWalk{}

type stopWalk struct{}

func (stopWalk) Error() string { return "walk stopped" }

// root reads the root block of the tree.
func (t Tree) root() (*node, error) {
	if t.fs == nil {
		return nil, errors.New("btrfsread: zero Tree")
	}
	return t.fs.readBlock(t.bytenr, blockWant{level: t.level, generation: t.generation})
}

// child reads the block slot i of node n points to, checking it against the
// pointer.
func (fs *FS) child(n *node, i int) (*node, error) {
	bytenr, gen := n.ptr(i)
	k := n.key(i)
	return fs.readBlock(bytenr, blockWant{level: n.level - 1, generation: gen, firstKey: &k})
}

// pathLevel is one step of a root-to-leaf path.
type pathLevel struct {
	n    *node
	slot int
}

// path is a root-to-leaf position in a tree; path[0] is the root. Its depth
// is at most maxTreeLevel because every child is one level lower.
type path []pathLevel

// descend follows, from the root, the child whose range holds k (the last
// pointer <= k), into buf (the caller's array, which stays on its stack).
// With strict set it fails with ErrNotFound when k sorts before the whole
// tree; otherwise it takes the first child then.
func (t Tree) descend(k Key, strict bool, buf *[maxTreeLevel]pathLevel) (path, error) {
	n, err := t.root()
	if err != nil {
		return nil, err
	}
	p := path(buf[:0])
	for n.level > 0 {
		slot := n.lastAtOrBefore(k)
		if slot < 0 {
			if strict {
				return nil, ErrNotFound
			}
			slot = 0
		}
		p = append(p, pathLevel{n, slot})
		if n, err = t.fs.child(n, slot); err != nil {
			return nil, err
		}
	}
	return append(p, pathLevel{n, 0}), nil
}

// Search returns the item with exactly key k, or ErrNotFound.
func (t Tree) Search(k Key) (Item, error) {
	var buf [maxTreeLevel]pathLevel
	p, err := t.descend(k, true, &buf)
	if err != nil {
		return Item{}, err
	}
	leaf := p[len(p)-1].n
	if i, ok := leaf.search(k); ok {
		return leaf.item(i), nil
	}
	return Item{}, ErrNotFound
}

// SearchBefore returns the last item whose key is <= k, or ErrNotFound.
// Every child's first key equals its parent's key (checked on read), so the
// leaf reached by descent holds the answer if there is one.
func (t Tree) SearchBefore(k Key) (Item, error) {
	var buf [maxTreeLevel]pathLevel
	p, err := t.descend(k, true, &buf)
	if err != nil {
		return Item{}, err
	}
	leaf := p[len(p)-1].n
	if i := leaf.lastAtOrBefore(k); i >= 0 {
		return leaf.item(i), nil
	}
	return Item{}, ErrNotFound
}

// Walk calls fn for every item with from <= key <= to, in key order. It reads
// only the blocks that can hold such keys.
func (t Tree) Walk(from, to Key, fn func(Item) error) error {
	if from.Compare(to) > 0 {
		return nil
	}
	var buf [maxTreeLevel]pathLevel
	p, err := t.descend(from, false, &buf)
	if err != nil {
		return err
	}
	leaf := &p[len(p)-1]
	leaf.slot, _ = leaf.n.search(from)
	var ahead *node // the leaves' parent whose next leaves are read ahead
	for {
		for ; leaf.slot < leaf.n.nritems; leaf.slot++ {
			it := leaf.n.item(leaf.slot)
			if it.Key.Compare(to) > 0 {
				return nil
			}
			if err := fn(it); err != nil {
				if errors.Is(err, ErrStopWalk) {
					return nil
				}
				return err
			}
		}
		more, err := t.nextLeaf(p, to)
		if !more || err != nil {
			return err
		}
		// A walk that goes on past its first leaf reads the parent's
		// next leaves ahead (block devices only).
		if parent := &p[len(p)-2]; parent.n != ahead {
			ahead = parent.n
			t.fs.readAheadLeaves(parent.n, parent.slot+1, to)
		}
	}
}

// nextLeaf moves p to the first slot of the next leaf. It reports false at
// the end of the tree or when the next subtree starts after to.
func (t Tree) nextLeaf(p path, to Key) (bool, error) {
	i := len(p) - 2
	for ; i >= 0; i-- {
		if p[i].slot+1 < p[i].n.nritems {
			break
		}
	}
	if i < 0 {
		return false, nil
	}
	p[i].slot++
	if p[i].n.key(p[i].slot).Compare(to) > 0 {
		return false, nil
	}
	for ; i < len(p)-1; i++ {
		n, err := t.fs.child(p[i].n, p[i].slot)
		if err != nil {
			return false, err
		}
		p[i+1] = pathLevel{n, 0}
	}
	return true, nil
}
