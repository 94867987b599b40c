package fusefs

// pair is one stream: child, incremental from parent unless nil.
type pair struct{ child, parent *snapshot }

// openPair describes the pair's stream (cheap: it generates nothing).
func (r *Root) openPair(p pair) (pairStream, error) {
	if p.parent == nil {
		return r.open(p.child.sv, nil)
	}
	return r.open(p.child.sv, p.parent.sv)
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
