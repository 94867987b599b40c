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
	b := make([]byte, chunkItemSize+chunkStripeLen)
	le := binary.LittleEndian
	le.PutUint64(b[0:], synthChunkLen)
	le.PutUint64(b[8:], ExtentTreeID)
	le.PutUint64(b[16:], 64<<10)
	le.PutUint64(b[24:], 2) // SYSTEM
	le.PutUint32(b[32:], 4096)
	le.PutUint32(b[36:], 4096)
	le.PutUint32(b[40:], 4096)
	le.PutUint16(b[44:], 1)
	le.PutUint16(b[46:], 1)
	le.PutUint64(b[48:], 1) // devid
	le.PutUint64(b[56:], synthChunk)
	copy(b[64:], synthDevUUID[:])
	return b
}

func synthDevItem() []byte {
	b := make([]byte, devItemSize)
	binary.LittleEndian.PutUint64(b[0:], 1)
	binary.LittleEndian.PutUint64(b[8:], synthSize)
	copy(b[66:], synthDevUUID[:])
	copy(b[82:], testFSID[:])
	return b
}

// buildSuperblock makes a valid crc32c superblock for the synthetic image.
func buildSuperblock() []byte {
	b := make([]byte, superSize)
	le := binary.LittleEndian
	copy(b[0x20:], testFSID[:])
	le.PutUint64(b[0x30:], uint64(superOffsets[0]))
	le.PutUint64(b[0x38:], 1)
	copy(b[0x40:], superMagic)
	le.PutUint64(b[0x48:], synthGen)
	le.PutUint64(b[0x50:], synthRoot)
	le.PutUint64(b[0x58:], synthChunkRoot)
	le.PutUint64(b[0x70:], synthSize)
	le.PutUint64(b[0x80:], RootTreeDirID)
	le.PutUint64(b[0x88:], 1)
	le.PutUint32(b[0x90:], 4096)
	le.PutUint32(b[0x94:], 4096)
	le.PutUint32(b[0x98:], 4096)
	le.PutUint32(b[0x9c:], 4096)
	sys := append(make([]byte, diskKeySize), synthChunkItem()...)
	putDiskKey(sys, Key{FirstChunkTreeObj, ChunkItemKey, synthChunk})
	le.PutUint32(b[0xa0:], uint32(len(sys)))
	le.PutUint64(b[0xa4:], synthGen)
	le.PutUint64(b[0xbc:], incompatMixedBackref|incompatBigMetadata|incompatExtendedIref|incompatSkinnyMetadata|incompatNoHoles)
	copy(b[superOffDevItem:], synthDevItem())
	copy(b[superOffLabel:], "synthetic")
	copy(b[superOffSysChunks:], sys)
	copy(b, crc32cSum(b[superCsumEnd:]))
	return b
}

func crc32cSum(b []byte) []byte { return csumAlgos[CsumCRC32C].sum(b) }

// buildImage assembles the synthetic image around superblock sb.
func buildImage(sb []byte) []byte {
	img := make([]byte, synthSize)
	copy(img[superOffsets[0]:], sb)
	chunkLeaf := buildLeaf(testRules, synthChunkRoot, synthGen, []Item{
		{Key{1, DevItemKey, 1}, synthDevItem()},
		{Key{FirstChunkTreeObj, ChunkItemKey, synthChunk}, synthChunkItem()},
	})
	copy(img[synthChunkRoot:], chunkLeaf)
	rootLeaf := buildLeaf(testRules, synthRoot, synthGen, []Item{
		{Key{FSTreeID, RootItemKey, 0}, make([]byte, 439)},
		{Key{RootTreeDirID, OrphanItemKey, 1}, []byte("dir")},
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
	if err := fs.readLogical(make([]byte, 10), synthChunk+synthChunkLen-5, 0); err == nil {
		t.Error("read running past the last chunk succeeded")
	}
}

func TestSuperblockMirrors(t *testing.T) {
	sb := buildSuperblock()
	img := buildImage(sb)
	img[superOffsets[0]+0x40] = 'x' // primary lost; no mirror fits in 2 MiB
	if _, err := newSynthFS(t, img); !errors.Is(err, ErrNotBtrfs) {
		t.Errorf("no valid copy: %v", err)
	}

	// A 65 MiB device has a second copy; the one with the newer generation wins.
	big := make([]byte, superOffsets[1]+superSize)
	copy(big, buildImage(sb))
	mirror := bytes.Clone(sb)
	binary.LittleEndian.PutUint64(mirror[0x30:], uint64(superOffsets[1]))
	binary.LittleEndian.PutUint64(mirror[0x48:], synthGen+1)
	copy(mirror[superOffDevItem+8:], binary.LittleEndian.AppendUint64(nil, uint64(len(big))))
	copy(mirror, crc32cSum(mirror[superCsumEnd:]))
	copy(big[superOffsets[1]:], mirror)
	got, err := readSuperblock(Device{"big", bytes.NewReader(big), int64(len(big))})
	if err != nil || got.generation != synthGen+1 {
		t.Errorf("newest copy: %v %v", got, err)
	}
	mirror[0x20] ^= 1 // another filesystem's copy is ignored
	copy(mirror, crc32cSum(mirror[superCsumEnd:]))
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
		name string
		off  int
		val  uint32
	}{
		{"sectorsize not power of 2", 0x90, 5000},
		{"sectorsize too small", 0x90, 2048},
		{"nodesize below sectorsize", 0x94, 2048},
		{"nodesize too big", 0x94, 128 << 10},
		{"sys_chunk_array too big", 0xa0, 4000},
	} {
		sb := buildSuperblock()
		binary.LittleEndian.PutUint32(sb[c.off:], c.val)
		copy(sb, crc32cSum(sb[superCsumEnd:]))
		var ce *CorruptError
		if _, err := parseSuperblock(sb, uint64(superOffsets[0])); !errors.As(err, &ce) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	sb := buildSuperblock()
	sb[0xc6] = 8
	copy(sb, crc32cSum(sb[superCsumEnd:]))
	if _, err := parseSuperblock(sb, uint64(superOffsets[0])); err == nil {
		t.Error("root level 8 accepted")
	}
	if _, err := parseSuperblock(buildSuperblock(), 12345); err == nil {
		t.Error("superblock at the wrong place accepted")
	}
}
