package fusefs

import "errors"

// pair is one stream: child, incremental from parent unless nil.
type pair struct{ child, parent *snapshot }

// errGone: a snapshot of the pair was deleted or renamed since the pair's
// node was made.
var errGone = errors.New("the snapshot was deleted or renamed")

// openPair describes the pair's stream (cheap: it generates nothing), with
// the subvolumes as the newest catalog shows them.
func (r *Root) openPair(p pair) (pairStream, error) {
	cat := r.catalog()
	child := cat.current(p.child)
	if child == nil {
		return nil, errGone
	}
	if p.parent == nil {
		return r.open(child.sv, nil)
	}
	parent := cat.current(p.parent)
	if parent == nil {
		return nil, errGone
	}
	return r.open(child.sv, parent.sv)
}

// label is the stream's path in the mount, for log lines.
func (p pair) label() string {
	if p.parent == nil {
		return "snapshots/" + p.child.name + "/" + fullName
	}
	return "snapshots/" + p.child.name + "/" + fromName + "/" + p.parent.name + streamSuffix
}

// ino is the stream file's inode number.
func (p pair) ino() uint64 {
	if p.parent == nil {
		return inodeNumber(kindFull, p.child.sv.ID, 0)
	}
	return inodeNumber(kindIncremental, p.child.sv.ID, p.parent.sv.ID)
}
