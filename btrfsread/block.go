package btrfsread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Tree block layout (docs/FORMAT.md §2.3).
const (
	headerSize   = 101
	keyPtrSize   = 33 // node: disk key, blockptr, generation
	itemHdrSize  = 25 // leaf: disk key, data offset, data size
	headerFSID   = 32
	headerBytenr = 48
	headerGen    = 80
	headerOwner  = 88
	headerNr     = 96
	headerLevel  = 100
)

func parseDiskKey(b []byte) Key {
	return Key{
		ObjectID: binary.LittleEndian.Uint64(b[0:]),
		Type:     b[8],
		Offset:   binary.LittleEndian.Uint64(b[9:]),
	}
}

// node is a validated tree block. b is immutable once the node is built:
// it is shared by the cache and by every Item taken from it.
type node struct {
	logical    uint64
	b          []byte
	generation uint64
	owner      uint64
	nritems    int
	level      uint8
	// readAt is the generation of the view that read the block straight
	// from disk for a read no parent vouched for (0 otherwise): see
	// FS.vouched.
	readAt uint64
}

// key returns the key of slot i (an item in a leaf, a pointer in a node).
func (n *node) key(i int) Key {
	if n.level == 0 {
		return parseDiskKey(n.b[headerSize+i*itemHdrSize:])
	}
	return parseDiskKey(n.b[headerSize+i*keyPtrSize:])
}

// ptr returns the child block address and generation of slot i of a node.
func (n *node) ptr(i int) (bytenr, generation uint64) {
	p := n.b[headerSize+i*keyPtrSize+diskKeySize:]
	return binary.LittleEndian.Uint64(p), binary.LittleEndian.Uint64(p[8:])
}

// itemData returns the payload of item i of a leaf, capped so that an
// append by a caller cannot write into the shared block.
func (n *node) itemData(i int) []byte {
	h := n.b[headerSize+i*itemHdrSize+diskKeySize:]
	off := headerSize + int(binary.LittleEndian.Uint32(h))
	end := off + int(binary.LittleEndian.Uint32(h[4:]))
	return n.b[off:end:end]
}

func (n *node) item(i int) Item { return Item{Key: n.key(i), Data: n.itemData(i), Leaf: n.logical} }

// search returns the first slot whose key is >= k (nritems if none) and
// whether that key equals k.
func (n *node) search(k Key) (int, bool) {
	lo, hi := 0, n.nritems
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if n.key(mid).Compare(k) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, lo < n.nritems && n.key(lo) == k
}

// lastAtOrBefore returns the last slot whose key is <= k, or -1.
func (n *node) lastAtOrBefore(k Key) int {
	i, exact := n.search(k)
	if exact {
		return i
	}
	return i - 1
}

// nodeRules are the filesystem facts a tree block is checked against.
type nodeRules struct {
	nodeSize   uint32
	sectorSize uint32
	fsid       UUID // metadata_uuid when METADATA_UUID is set
	csum       csumAlgo
}

func (fs *FS) nodeRules() nodeRules {
	return nodeRules{fs.sb.nodeSize, fs.sb.sectorSize, fs.sb.metadataUUID, fs.csum}
}

// parseNode validates the block b read at logical: checksum, bytenr, fsid,
// level and every count and offset, so that the accessors of node cannot go
// out of bounds. b becomes owned by the node.
func parseNode(b []byte, logical uint64, r nodeRules) (*node, error) {
	bad := func(format string, args ...any) (*node, error) {
		return nil, &CorruptError{Logical: logical, Reason: fmt.Sprintf(format, args...)}
	}
	if len(b) != int(r.nodeSize) || len(b) < headerSize {
		return bad("block is %d bytes, want nodesize %d", len(b), r.nodeSize)
	}
	var sum [32]byte
	if !bytes.Equal(r.csum.sum(&sum, b[superCsumEnd:]), b[:r.csum.size]) {
		return bad("%s checksum mismatch", r.csum.name)
	}
	le := binary.LittleEndian
	if got := le.Uint64(b[headerBytenr:]); got != logical {
		return bad("header bytenr is 0x%x", got)
	}
	if !bytes.Equal(b[headerFSID:headerFSID+16], r.fsid[:]) {
		return bad("header fsid %s does not belong to this filesystem", uuidString(UUID(b[headerFSID:headerFSID+16])))
	}
	n := &node{
		logical:    logical,
		b:          b,
		generation: le.Uint64(b[headerGen:]),
		owner:      le.Uint64(b[headerOwner:]),
		level:      b[headerLevel],
	}
	if n.level >= maxTreeLevel {
		return bad("level %d", n.level)
	}
	nr := uint64(le.Uint32(b[headerNr:]))
	space := uint64(len(b) - headerSize)
	if n.level == 0 {
		if nr*itemHdrSize > space {
			return bad("leaf with %d items does not fit", nr)
		}
		n.nritems = int(nr)
		if err := n.checkLeafItems(space); err != "" {
			return bad("%s", err)
		}
	} else {
		if nr == 0 || nr*keyPtrSize > space {
			return bad("node with %d pointers", nr)
		}
		n.nritems = int(nr)
		for i := range n.nritems {
			if p, _ := n.ptr(i); p == 0 || p%uint64(r.sectorSize) != 0 {
				return bad("slot %d: invalid block pointer 0x%x", i, p)
			}
		}
	}
	for i := 1; i < n.nritems; i++ {
		if n.key(i-1).Compare(n.key(i)) >= 0 {
			return bad("keys out of order at slot %d: %v then %v", i, n.key(i-1), n.key(i))
		}
	}
	if n.level == 0 {
		if err := checkLeaf(n, r); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// checkLeafItems checks that every item's data lies between the item headers
// and the end of the block.
func (n *node) checkLeafItems(space uint64) string {
	hdrEnd := uint64(n.nritems) * itemHdrSize
	for i := range n.nritems {
		h := n.b[headerSize+i*itemHdrSize+diskKeySize:]
		off := uint64(binary.LittleEndian.Uint32(h))
		size := uint64(binary.LittleEndian.Uint32(h[4:]))
		if off < hdrEnd || off+size > space {
			return fmt.Sprintf("item %d: data [%d, %d) outside the leaf", i, off, off+size)
		}
	}
	return ""
}

// blockWant is what a parent pointer (or a root item) promises about the
// block it points to.
type blockWant struct {
	level      uint8
	generation uint64 // 0: not checked
	firstKey   *Key   // nil: not checked (tree roots)
}

func (w blockWant) check(n *node) error {
	bad := func(format string, args ...any) error {
		return &CorruptError{Logical: n.logical, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case n.level != w.level:
		return bad("level %d, parent expects %d", n.level, w.level)
	case w.generation != 0 && n.generation != w.generation:
		return bad("generation %d, parent expects %d", n.generation, w.generation)
	case w.firstKey != nil && (n.nritems == 0 || n.key(0) != *w.firstKey):
		return bad("first key does not match the parent's key %v", *w.firstKey)
	}
	return nil
}

// readBlock returns the validated tree block at logical, from the cache or
// from the first good copy on disk.
func (fs *FS) readBlock(logical uint64, want blockWant) (*node, error) {
	n, err := fs.blocks.Get(logical, func() (*node, error) { return fs.loadBlock(logical, want) })
	if err == nil && want.check(n) == nil && fs.vouched(n, want) {
		return n, nil
	}
	// The block was loaded for another pointer that promised something
	// else (one of the two is stale or corrupt), or that load failed: a
	// pointer of another view of a live filesystem may have asked for it.
	n, err = fs.loadBlock(logical, want)
	if err != nil {
		return nil, err
	}
	fs.blocks.Put(n.logical, n)
	return n, nil
}

// vouched reports whether the cached n may answer want in this view. A
// parent's pointer vouches for a block by its generation (want.check). A
// read without one (the leaf a shared backref names) may find a block
// cached from a view when its address held another block: n answers only
// if it was read from disk at or after this view's commit and written no
// later than it, since nothing written later can have been replaced by a
// block as old.
func (fs *FS) vouched(n *node, want blockWant) bool {
	return want.generation != 0 || (n.readAt >= fs.sb.generation && n.generation <= fs.sb.generation)
}

// loadBlock reads the block at logical from disk, trying every copy. When
// no copy is good and the view is the newest, it drops the devices' cached
// windows and tries once more: a window of a block device that the kernel
// has mounted may have been read before the kernel rewrote the block.
func (fs *FS) loadBlock(logical uint64, want blockWant) (*node, error) {
	n, err := fs.loadBlockCopies(logical, want)
	if Stale(err) && fs.newest() && fs.dropCaches() {
		n, err = fs.loadBlockCopies(logical, want)
	}
	if err != nil || want.generation != 0 {
		return n, err
	}
	// Read past our caches (loadBlockCopies): stamp it for vouched.
	if n.generation > fs.sb.generation {
		return nil, &CorruptError{Logical: logical, Reason: fmt.Sprintf("generation %d is newer than the filesystem's commit %d", n.generation, fs.sb.generation)}
	}
	n.readAt = fs.sb.generation
	return n, nil
}

func (fs *FS) loadBlockCopies(logical uint64, want blockWant) (*node, error) {
	copies, err := fs.copies(logical)
	if err != nil {
		return nil, err
	}
	rules := fs.nodeRules()
	var reasons []string
	var ioErr error // the first read error, reported as such when no copy was corrupt
	corrupt := false
	for mirror := range copies {
		fs.diskBlockReads.Add(1)
		b := make([]byte, rules.nodeSize)
		// A read no parent vouches for goes past our caches (vouched).
		fresh := want.generation == 0
		err := fs.readLogical(b, logical, mirror, fresh)
		var n *node
		if err == nil {
			n, err = parseNode(b, logical, rules)
		}
		if err == nil {
			err = want.check(n)
		}
		if err == nil {
			return n, nil
		}
		var ce *CorruptError
		if errors.As(err, &ce) {
			corrupt = true
			reasons = append(reasons, fmt.Sprintf("copy %d: %s", mirror+1, ce.Reason))
			continue
		}
		reasons = append(reasons, fmt.Sprintf("copy %d: %v", mirror+1, err))
		if ioErr == nil {
			ioErr = err
		}
	}
	if !corrupt {
		return nil, fmt.Errorf("tree block at logical 0x%x: %w", logical, ioErr)
	}
	return nil, &CorruptError{Logical: logical, Reason: "tree block is bad in every copy: " + strings.Join(reasons, "; ")}
}
