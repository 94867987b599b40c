package btrfsread

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sort"
)

// Block group profile bits of a chunk's type (docs/FORMAT.md §2.6).
const (
	bgRAID0    = 1 << 3
	bgRAID1    = 1 << 4
	bgDUP      = 1 << 5
	bgRAID10   = 1 << 6
	bgRAID5    = 1 << 7
	bgRAID6    = 1 << 8
	bgRAID1C3  = 1 << 9
	bgRAID1C4  = 1 << 10
	bgRemapped = 1 << 11

	bgProfileMask = bgRAID0 | bgRAID1 | bgDUP | bgRAID10 | bgRAID5 | bgRAID6 | bgRAID1C3 | bgRAID1C4
)

const (
	chunkItemSize  = 48 // btrfs_chunk without its stripes
	chunkStripeLen = 32 // btrfs_stripe: devid, offset, dev_uuid
	diskKeySize    = 17
)

// stripe is one device extent of a chunk.
type stripe struct {
	devid   uint64
	offset  uint64 // physical
	devUUID UUID
	dev     *member // resolved when the filesystem is assembled
}

// chunk maps [logical, logical+length) onto its stripes.
type chunk struct {
	logical    uint64
	length     uint64
	stripeLen  uint64
	typ        uint64
	subStripes int
	stripes    []stripe
}

func (c *chunk) end() uint64 { return c.logical + c.length }

// profile returns the profile bit of the chunk (0 for SINGLE).
func (c *chunk) profile() uint64 { return c.typ & bgProfileMask }

// dataStripes is the number of data stripes per row of a RAID5/6 chunk.
func (c *chunk) dataStripes() int {
	switch c.profile() {
	case bgRAID5:
		return len(c.stripes) - 1
	case bgRAID6:
		return len(c.stripes) - 2
	}
	return len(c.stripes)
}

// copies is how many independent reads can produce a block of the chunk.
// For RAID5/6 the copies after the first are rebuilds from parity
// (raid56.go).
func (c *chunk) copies() int {
	switch c.profile() {
	case bgDUP, bgRAID1, bgRAID1C3, bgRAID1C4:
		return len(c.stripes)
	case bgRAID10:
		return c.subStripes
	case bgRAID5, bgRAID6:
		return raid56Copies(c.profile(), c.dataStripes())
	}
	return 1
}

// parseChunk decodes a CHUNK_ITEM body for the chunk starting at logical and
// returns it with the number of bytes it used.
func parseChunk(logical uint64, b []byte) (chunk, int, error) {
	bad := func(format string, args ...any) (chunk, int, error) {
		return chunk{}, 0, &CorruptError{Logical: logical, Reason: "chunk item: " + fmt.Sprintf(format, args...)}
	}
	var raw rawChunk
	if _, err := binary.Decode(b, binary.LittleEndian, &raw); err != nil {
		return bad("%d bytes, too short", len(b))
	}
	c := chunk{
		logical:    logical,
		length:     raw.Length,
		stripeLen:  raw.StripeLen,
		typ:        raw.Type,
		subStripes: int(raw.SubStripes),
	}
	n := int(raw.NumStripes)
	size := chunkItemSize + n*chunkStripeLen
	switch {
	case n == 0:
		return bad("no stripes")
	case len(b) < size:
		return bad("%d stripes need %d bytes, have %d", n, size, len(b))
	case c.length == 0 || c.logical+c.length < c.logical:
		return bad("invalid length %d", c.length)
	case bits.OnesCount64(c.stripeLen) != 1 || c.stripeLen < 4096 || c.stripeLen > 1<<30:
		return bad("invalid stripe length %d", c.stripeLen)
	case c.typ&bgRemapped != 0:
		return chunk{}, 0, sentinelf(ErrUnsupported, "chunk at logical 0x%x is remapped (remap-tree), which sendfs cannot read", logical)
	case bits.OnesCount64(c.typ&bgProfileMask) > 1:
		return bad("several profiles in type 0x%x", c.typ)
	}
	c.stripes = make([]stripe, n)
	for i := range c.stripes {
		var s rawStripe
		if _, err := binary.Decode(b[chunkItemSize+i*chunkStripeLen:], binary.LittleEndian, &s); err != nil {
			return bad("stripe %d: %v", i, err)
		}
		c.stripes[i] = stripe{devid: s.DevID, offset: s.Offset, devUUID: s.DevUUID}
	}
	if need, ok := minStripes[c.profile()]; ok && n < need || !c.stripeCountFits(n) {
		return bad("%d stripes (sub_stripes %d) impossible for type 0x%x", n, c.subStripes, c.typ)
	}
	return c, size, nil
}

// minStripes is the least number of stripes each profile needs.
var minStripes = map[uint64]int{
	bgRAID0: 1, bgRAID1: 2, bgDUP: 2, bgRAID10: 2, bgRAID5: 2, bgRAID6: 3, bgRAID1C3: 3, bgRAID1C4: 4,
}

func (c *chunk) stripeCountFits(n int) bool {
	switch c.profile() {
	case 0:
		return n == 1
	case bgDUP:
		return n == 2
	case bgRAID10:
		return c.subStripes >= 2 && n%c.subStripes == 0
	}
	return true
}

// parseSysChunkArray decodes the superblock's bootstrap SYSTEM chunks.
func parseSysChunkArray(b []byte) ([]chunk, error) {
	var out []chunk
	for len(b) > 0 {
		if len(b) < diskKeySize {
			return nil, &CorruptError{Reason: "sys_chunk_array: truncated key"}
		}
		k := parseDiskKey(b)
		if k.Type != ChunkItemKey {
			return nil, &CorruptError{Reason: "sys_chunk_array: unexpected key " + k.String()}
		}
		c, n, err := parseChunk(k.Offset, b[diskKeySize:])
		if err != nil {
			return nil, err
		}
		out = append(out, c)
		b = b[diskKeySize+n:]
	}
	return out, nil
}

// chunkMap is the logical address space: chunks sorted by logical start,
// not overlapping. It is immutable once built.
type chunkMap []chunk

func newChunkMap(chunks []chunk) (chunkMap, error) {
	m := chunkMap(chunks)
	sort.Slice(m, func(i, j int) bool { return m[i].logical < m[j].logical })
	for i := 1; i < len(m); i++ {
		if m[i].logical < m[i-1].end() {
			return nil, &CorruptError{Logical: m[i].logical, Reason: "overlapping chunks"}
		}
	}
	return m, nil
}

// find returns the chunk holding logical, or nil.
func (m chunkMap) find(logical uint64) *chunk {
	i := sort.Search(len(m), func(i int) bool { return m[i].end() > logical })
	if i < len(m) && m[i].logical <= logical {
		return &m[i]
	}
	return nil
}

// place is one physical piece of a logical read.
type place struct {
	s        *stripe
	physical uint64
}

// locate maps a read at off (relative to the chunk start) from copy mirror
// to its physical place and the number of bytes that place holds
// contiguously (up to limit). For RAID5/6 it maps the data stripe; a
// rebuild (mirror >= 1) is readLogical's job.
func (c *chunk) locate(off, limit uint64, mirror int) (place, uint64) {
	L := c.stripeLen
	nr, so := off/L, off%L
	untilStripeEnd := min(limit, L-so)
	n := uint64(len(c.stripes))
	switch c.profile() {
	case 0:
		return place{&c.stripes[0], c.stripes[0].offset + off}, limit
	case bgDUP, bgRAID1, bgRAID1C3, bgRAID1C4:
		s := &c.stripes[mirror]
		return place{s, s.offset + off}, limit
	case bgRAID0:
		s := &c.stripes[nr%n]
		return place{s, s.offset + nr/n*L + so}, untilStripeEnd
	case bgRAID10:
		sub := uint64(c.subStripes)
		factor := n / sub
		s := &c.stripes[nr%factor*sub+uint64(mirror)]
		return place{s, s.offset + nr/factor*L + so}, untilStripeEnd
	default: // RAID5, RAID6: data stripe j of row r sits on device (j+r) % n
		d := uint64(c.dataStripes())
		row := nr / d
		s := &c.stripes[(row+nr%d)%n]
		return place{s, s.offset + row*L + so}, untilStripeEnd
	}
}

// readLogical reads len(p) bytes at logical address from copy number mirror
// (0 <= mirror < copies), splitting at stripe boundaries; with fresh set,
// past any cache of ours. It does no checksum verification.
func (fs *FS) readLogical(p []byte, logical uint64, mirror int, fresh bool) error {
	return fs.readPieces(p, logical, mirror, fresh, func(_, _ uint64, err error) error { return err })
}

// readPieces reads like readLogical, one piece per stripe (or chunk) at a
// time; with fresh set, past any cache of ours (readFresh). A piece that cannot be read is passed to failed with its offset in
// p and length; reading goes on with the next piece unless failed returns
// an error, which readPieces then returns.
func (fs *FS) readPieces(p []byte, logical uint64, mirror int, fresh bool, failed func(off, n uint64, err error) error) error {
	for done := uint64(0); done < uint64(len(p)); {
		c := fs.chunks.find(logical)
		if c == nil {
			return &CorruptError{Logical: logical, Reason: "logical address not mapped by any chunk"}
		}
		if mirror < 0 || mirror >= c.copies() {
			return fmt.Errorf("logical 0x%x: copy %d of %d does not exist", logical, mirror, c.copies())
		}
		limit := min(uint64(len(p))-done, c.end()-logical)
		pl, n := c.locate(logical-c.logical, limit, mirror)
		piece := p[done : done+n]
		var err error
		if mirror >= 1 && (c.profile() == bgRAID5 || c.profile() == bgRAID6) {
			err = fs.rebuildRAID56(c, piece, logical-c.logical, mirror)
		} else {
			err = fs.readStripe(c, pl, piece, fresh)
		}
		if err != nil {
			if err = failed(done, n, fmt.Errorf("logical 0x%x: %w", logical, err)); err != nil {
				return err
			}
		}
		done += n
		logical += n
	}
	return nil
}

// readPhysical reads p at a physical place (fresh: past any cache of ours),
// reporting a read beyond the end of the device as a truncated image.
func (fs *FS) readPhysical(pl place, p []byte, fresh bool) error {
	dev := pl.s.dev
	if pl.physical > uint64(dev.Size) || uint64(len(p)) > uint64(dev.Size)-pl.physical {
		return truncatedf(dev.Name, "needs bytes up to %d, device has %d", pl.physical+uint64(len(p)), dev.Size)
	}
	var err error
	if fresh {
		_, err = readFresh(dev.Device, p, int64(pl.physical))
	} else {
		_, err = dev.R.ReadAt(p, int64(pl.physical))
	}
	if err != nil {
		return fmt.Errorf("%s: read at physical %d: %w", dev.Name, pl.physical, err)
	}
	return nil
}

// copies returns how many copies of the block at logical exist (1 for
// SINGLE/RAID0, 2 for DUP/RAID1, ...).
func (fs *FS) copies(logical uint64) (int, error) {
	c := fs.chunks.find(logical)
	if c == nil {
		return 0, &CorruptError{Logical: logical, Reason: "logical address not mapped by any chunk"}
	}
	return c.copies(), nil
}
