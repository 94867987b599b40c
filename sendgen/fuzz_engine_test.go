package sendgen

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"sendfs/btrfsread"
)

// FuzzEngine runs the engine over crafted images: testdata/engine.img.gz
// (see mkengineimg.sh: a subvolume and snapshots s1, s2 differing by one
// change of each kind) with the tree blocks changed by the fuzz script and
// their checksums recomputed, so that the changes reach the item parsers,
// the leaf checker and the engine. Every full and incremental send of s1
// and s2 must end (no panic, no hang) and never disagree with itself: when
// both the counted size and the written stream succeed, they have the same
// length, and a stream is never written when counting it failed.
func FuzzEngine(f *testing.F) {
	img := loadEngineImage(f)
	// Shapes of issue 10 and of the hardening work, as mutation scripts:
	// {key type, item index, offset lo, offset hi, value}; key type 0
	// changes a raw byte of block number index.
	for _, seed := range [][]byte{
		nil,
		{108, 0, 20, 0, 46},  // file extent type 46
		{108, 1, 20, 0, 3},   // file extent type 3
		{108, 2, 16, 0, 255}, // compression 255
		{108, 3, 17, 0, 1},   // encryption 1
		{108, 4, 18, 0, 1},   // other_encoding 1
		{108, 5, 52, 0, 0x80},
		{1, 3, 52, 0, 0xff},  // inode mode
		{1, 1, 40, 0, 9},     // directory nlink
		{84, 0, 27, 0, 0xff}, // dir item name_len
		{96, 2, 29, 0, 8},    // dir index type xattr
		{12, 1, 9, 0, 0xff},  // inode ref name_len
		{132, 3, 238, 0, 200},
		{0, 5, 96, 0, 0xff}, // nritems
		{0, 3, 102, 0, 0},   // first key
		{108, 0, 45, 0, 0, 108, 0, 53, 0, 0},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		data := img.mutate(script)
		fsys, err := btrfsread.New([]btrfsread.Device{{Name: "fuzz", R: bytes.NewReader(data), Size: int64(len(data))}})
		if err != nil {
			return
		}
		defer fsys.Close()
		s1, err1 := fsys.FindSubvolume("s1")
		s2, err2 := fsys.FindSubvolume("s2")
		if err1 != nil || err2 != nil {
			return
		}
		for _, pair := range [][2]*btrfsread.Subvolume{{s1, nil}, {s2, nil}, {s2, s1}, {s1, s2}} {
			checkEngineRun(t, pair[0], pair[1])
		}
	})
}

// checkEngineRun counts and writes one stream and checks that they agree.
func checkEngineRun(t *testing.T, child, parent *btrfsread.Subvolume) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	newStream := func() *Stream {
		s, err := NewStream(child, parent, Options{})
		if err != nil {
			return nil
		}
		return s
	}
	s := newStream()
	if s == nil {
		return
	}
	size, serr := s.Size(ctx)
	n, werr := newStream().WriteTo(ctx, io.Discard, nil)
	switch {
	case ctx.Err() != nil:
		t.Fatalf("send of %d (parent %v) did not end within a minute", child.ID, parent != nil)
	case serr != nil && werr == nil:
		t.Fatalf("size failed (%v) but the %d-byte stream was written", serr, n)
	case serr == nil && werr == nil && n != size:
		t.Fatalf("size %d, stream %d bytes", size, n)
	}
}

// engineImage is the decompressed base image and where its tree blocks
// are: the physical copies of each logical block.
type engineImage struct {
	base     []byte
	nodeSize int
	blocks   [][]int64 // per logical block, its physical offsets
}

var (
	engineImg     *engineImage
	engineImgErr  error
	engineImgOnce sync.Once
)

func loadEngineImage(f *testing.F) *engineImage {
	engineImgOnce.Do(func() {
		var raw []byte
		raw, engineImgErr = os.ReadFile("testdata/engine.img.gz")
		if engineImgErr != nil {
			return
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			engineImgErr = err
			return
		}
		base, err := io.ReadAll(zr)
		if err != nil {
			engineImgErr = err
			return
		}
		engineImg = indexEngineImage(base)
	})
	if engineImgErr != nil {
		f.Fatal(engineImgErr)
	}
	return engineImg
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func blockCsum(b []byte) uint32 { return crc32.Checksum(b[32:], crcTable) }

// indexEngineImage finds the live tree blocks: nodesize-aligned blocks with
// the filesystem's fsid and a good crc32c, grouped by their logical
// address, that the superblock reaches through root items and node
// pointers (stale copies of older transactions are left out).
func indexEngineImage(base []byte) *engineImage {
	const header, itemSize, ptrSize = 101, 25, 33
	le := binary.LittleEndian
	sb := base[64<<10:]
	img := &engineImage{base: base, nodeSize: int(le.Uint32(sb[0x94:]))}
	fsid := sb[0x20:0x30]
	copies := map[uint64][]int64{}
	for off := 0; off+img.nodeSize <= len(base); off += img.nodeSize {
		b := base[off : off+img.nodeSize]
		logical := le.Uint64(b[48:])
		if logical != 0 && bytes.Equal(b[32:48], fsid) && le.Uint32(b) == blockCsum(b) {
			copies[logical] = append(copies[logical], int64(off))
		}
	}
	queue := []uint64{le.Uint64(sb[0x50:]), le.Uint64(sb[0x58:])} // root tree, chunk tree
	seen := map[uint64]bool{}
	for len(queue) > 0 {
		logical := queue[0]
		queue = queue[1:]
		if seen[logical] || len(copies[logical]) == 0 {
			continue
		}
		seen[logical] = true
		img.blocks = append(img.blocks, copies[logical])
		p := copies[logical][0]
		b := base[p : p+int64(img.nodeSize)]
		nr := int(le.Uint32(b[96:]))
		for i := range nr {
			if b[100] != 0 && header+(i+1)*ptrSize <= len(b) {
				queue = append(queue, le.Uint64(b[header+i*ptrSize+17:]))
				continue
			}
			h := b[header+i*itemSize:]
			start := header + int(le.Uint32(h[17:]))
			if b[100] == 0 && header+(i+1)*itemSize <= len(b) && h[8] == 132 && start+184 <= len(b) {
				queue = append(queue, le.Uint64(b[start+176:])) // root item bytenr
			}
		}
	}
	return img
}

// mutate applies script to a copy of the image: each 5 bytes set one byte,
// of the index-th item of a key type (in block order), or of a raw block
// for key type 0. Changed blocks get their checksum back, in every copy.
func (img *engineImage) mutate(script []byte) []byte {
	data := bytes.Clone(img.base)
	if len(img.blocks) == 0 {
		return data
	}
	le := binary.LittleEndian
	touched := map[int]bool{}
	for ; len(script) >= 5; script = script[5:] {
		typ, idx, off, val := script[0], int(script[1]), int(le.Uint16(script[2:])), script[4]
		if typ == 0 {
			blk := idx % len(img.blocks)
			b := img.block(data, blk)
			b[32+off%(img.nodeSize-32)] = val
			touched[blk] = true
			continue
		}
		if blk, item := img.findItem(data, typ, idx); len(item) > 0 {
			item[off%len(item)] = val
			touched[blk] = true
		}
	}
	for blk := range touched {
		b := img.block(data, blk)
		le.PutUint32(b, blockCsum(b))
		for _, p := range img.blocks[blk][1:] {
			copy(data[p:p+int64(img.nodeSize)], b)
		}
	}
	return data
}

func (img *engineImage) block(data []byte, blk int) []byte {
	p := img.blocks[blk][0]
	return data[p : p+int64(img.nodeSize)]
}

// findItem returns the data of the idx-th item (modulo their number) whose
// key type is typ, among the leaves in block order, and its block.
func (img *engineImage) findItem(data []byte, typ uint8, idx int) (int, []byte) {
	const header, itemSize = 101, 25
	le := binary.LittleEndian
	type found struct {
		blk  int
		item []byte
	}
	var all []found
	for blk := range img.blocks {
		b := img.block(data, blk)
		if b[100] != 0 {
			continue
		}
		nr := int(le.Uint32(b[96:]))
		for i := 0; i < nr && header+(i+1)*itemSize <= len(b); i++ {
			h := b[header+i*itemSize:]
			start, size := int(le.Uint32(h[17:])), int(le.Uint32(h[21:]))
			if h[8] != typ || header+start+size > len(b) {
				continue
			}
			all = append(all, found{blk, b[header+start : header+start+size]})
		}
	}
	if len(all) == 0 {
		return 0, nil
	}
	f := all[idx%len(all)]
	return f.blk, f.item
}
