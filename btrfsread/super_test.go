package btrfsread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// A tiny in-memory filesystem: one SINGLE system chunk mapping logical
// 1 MiB to physical 1 MiB, the chunk tree root there, the root tree root
// one block later.
const (
	synthChunk     = 1 << 20
	synthChunkLen  = 1 << 20
	synthChunkRoot = synthChunk
	synthRoot      = synthChunk + 4096
	synthGen       = 9
	synthSize      = synthChunk + synthChunkLen
)

var synthDevUUID = UUID{0xde, 0xf}

func synthChunkItem() []byte {
	b, _ := binary.Append(nil, binary.LittleEndian, rawChunk{
		Length: synthChunkLen, Owner: ExtentTreeID, StripeLen: 64 << 10,
		Type:    2, // SYSTEM (block group type bit 1)
		IOAlign: 4096, IOWidth: 4096, SectorSize: 4096, NumStripes: 1, SubStripes: 1,
	})
	b, _ = binary.Append(b, binary.LittleEndian, rawStripe{DevID: 1, Offset: synthChunk, DevUUID: synthDevUUID})
	return b
}

var synthDev = rawDevItem{DevID: 1, TotalBytes: synthSize, UUID: synthDevUUID, FSID: testFSID}

// synthDevItem is the DEV_ITEM of the synthetic image's one device.
func synthDevItem() []byte {
	b, _ := binary.Append(nil, binary.LittleEndian, synthDev)
	return b
}

// buildSuperblock makes a valid crc32c superblock for the synthetic image.
func buildSuperblock() []byte {
	sys := append(make([]byte, diskKeySize), synthChunkItem()...)
	putDiskKey(sys, Key{FirstChunkTreeObj, ChunkItemKey, synthChunk})
	raw := rawSuperblock{
		FSID: testFSID, Bytenr: uint64(superOffsets[0]), Flags: 1, Generation: synthGen,
		Root: synthRoot, ChunkRoot: synthChunkRoot, TotalBytes: synthSize,
		RootDirObjectID: RootTreeDirID, NumDevices: 1,
		SectorSize: 4096, NodeSize: 4096, LeafSize: 4096, StripeSize: 4096,
		SysChunkArraySize: uint32(len(sys)), ChunkRootGeneration: synthGen,
		IncompatFlags: incompatMixedBackref | incompatBigMetadata | incompatExtendedIref | incompatSkinnyMetadata | incompatNoHoles,
		DevItem:       synthDev,
	}
	copy(raw.Magic[:], superMagic)
	copy(raw.Label[:], "synthetic")
	copy(raw.SysChunkArray[:], sys)
	return encodeSuperblock(&raw)
}

// encodeSuperblock encodes raw with its crc32c checksum.
func encodeSuperblock(raw *rawSuperblock) []byte {
	b, err := binary.Append(nil, binary.LittleEndian, raw)
	if err != nil {
		panic(err)
	}
	copy(b, crc32cSum(b[superCsumEnd:]))
	return b
}

// patchSuperblock decodes the superblock b, lets change alter it, and
// returns it encoded again with a fresh checksum.
func patchSuperblock(b []byte, change func(*rawSuperblock)) []byte {
	var raw rawSuperblock
	if _, err := binary.Decode(b, binary.LittleEndian, &raw); err != nil {
		panic(err)
	}
	change(&raw)
	return encodeSuperblock(&raw)
}

// TestRawLayouts: the raw structs are exactly the kernel's sizes, so every
// field's offset is the kernel's.
func TestRawLayouts(t *testing.T) {
	for _, c := range []struct {
		v    any
		want int
	}{{rawSuperblock{}, superSize}, {rawDevItem{}, 98}, {rawChunk{}, chunkItemSize}, {rawStripe{}, chunkStripeLen}} {
		if got := binary.Size(c.v); got != c.want {
			t.Errorf("%T is %d bytes, want %d", c.v, got, c.want)
		}
	}
}

func crc32cSum(b []byte) []byte { return csumAlgos[CsumCRC32C].sum(new([32]byte), b) }

// buildImage assembles the synthetic image around superblock sb.
func buildImage(sb []byte) []byte {
	img := make([]byte, synthSize)
	copy(img[superOffsets[0]:], sb)
	chunkLeaf := buildLeaf(testRules, synthChunkRoot, synthGen, []Item{
		{Key: Key{1, DevItemKey, 1}, Data: synthDevItem()},
		{Key: Key{FirstChunkTreeObj, ChunkItemKey, synthChunk}, Data: synthChunkItem()},
	})
	copy(img[synthChunkRoot:], chunkLeaf)
	rootLeaf := buildLeaf(testRules, synthRoot, synthGen, []Item{
		{Key: Key{FSTreeID, RootItemKey, 0}, Data: make([]byte, 439)},
		{Key: Key{RootTreeDirID, OrphanItemKey, 1}, Data: []byte("dir")},
	})
	copy(img[synthRoot:], rootLeaf)
	return img
}

func newSynthFS(t testing.TB, img []byte) (*FS, error) {
	t.Helper()
	return New([]Device{{Name: "synthetic", R: bytes.NewReader(img), Size: int64(len(img))}})
}

func TestSyntheticImage(t *testing.T) {
	fs, err := newSynthFS(t, buildImage(buildSuperblock()))
	if err != nil {
		t.Fatal(err)
	}
	if got := fs.Info(); got.Label != "synthetic" || got.Generation != synthGen || got.FSID != testFSID {
		t.Errorf("Info: %+v", got)
	}
	keys := allKeys(t, fs.RootTree())
	if len(keys) != 2 || keys[0] != (Key{FSTreeID, RootItemKey, 0}) {
		t.Errorf("root tree keys: %v", keys)
	}
	if n, err := fs.copies(synthChunk); n != 1 || err != nil {
		t.Errorf("copies: %d %v", n, err)
	}
	if _, err := fs.copies(synthChunk + synthChunkLen); err == nil {
		t.Error("copies of an unmapped address")
	}
	if err := fs.readLogical(make([]byte, 10), synthChunk+synthChunkLen-5, 0, false); err == nil {
		t.Error("read running past the last chunk succeeded")
	}
}

func TestSuperblockMirrors(t *testing.T) {
	sb := buildSuperblock()
	img := buildImage(sb)
	img[superOffsets[0]+0x40] = 'x' // the magic (rawSuperblock.Magic): primary lost; no mirror fits in 2 MiB
	if _, err := newSynthFS(t, img); !errors.Is(err, ErrNotBtrfs) {
		t.Errorf("no valid copy: %v", err)
	}

	// A 65 MiB device has a second copy; the one with the newer generation wins.
	big := make([]byte, superOffsets[1]+superSize)
	copy(big, buildImage(sb))
	mirror := patchSuperblock(sb, func(r *rawSuperblock) {
		r.Bytenr, r.Generation, r.DevItem.TotalBytes = uint64(superOffsets[1]), synthGen+1, uint64(len(big))
	})
	copy(big[superOffsets[1]:], mirror)
	got, err := readSuperblock(Device{"big", bytes.NewReader(big), int64(len(big))})
	if err != nil || got.generation != synthGen+1 {
		t.Errorf("newest copy: %v %v", got, err)
	}
	mirror = patchSuperblock(mirror, func(r *rawSuperblock) { r.FSID[0] ^= 1 }) // another filesystem's copy is ignored
	copy(big[superOffsets[1]:], mirror)
	got, err = readSuperblock(Device{"big", bytes.NewReader(big), int64(len(big))})
	if err != nil || got.generation != synthGen {
		t.Errorf("copy of another filesystem: %v %v", got, err)
	}
	big[superOffsets[1]+100] ^= 1 // bad checksum: fall back to the primary
	got, err = readSuperblock(Device{"big", bytes.NewReader(big), int64(len(big))})
	if err != nil || got.generation != synthGen {
		t.Errorf("fallback to primary: %v %v", got, err)
	}
}

func TestSuperblockSanity(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*rawSuperblock)
	}{
		{"sectorsize not power of 2", func(r *rawSuperblock) { r.SectorSize = 5000 }},
		{"sectorsize too small", func(r *rawSuperblock) { r.SectorSize = 2048 }},
		{"nodesize below sectorsize", func(r *rawSuperblock) { r.NodeSize = 2048 }},
		{"nodesize too big", func(r *rawSuperblock) { r.NodeSize = 128 << 10 }},
		{"sys_chunk_array too big", func(r *rawSuperblock) { r.SysChunkArraySize = 4000 }},
		{"root level 8", func(r *rawSuperblock) { r.RootLevel = maxTreeLevel }},
	} {
		sb := patchSuperblock(buildSuperblock(), c.change)
		var ce *CorruptError
		if _, err := parseSuperblock(sb, uint64(superOffsets[0])); !errors.As(err, &ce) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if _, err := parseSuperblock(buildSuperblock(), 12345); err == nil {
		t.Error("superblock at the wrong place accepted")
	}
}
