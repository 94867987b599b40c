package btrfsread

import (
	"testing"
)

// FuzzSuperblock feeds arbitrary superblocks (magic, bytenr and checksum
// fixed up) to the parser and, when one parses, assembles the synthetic
// image around it: bootstrap chunks, chunk tree, root tree walk.
func FuzzSuperblock(f *testing.F) {
	f.Add(buildSuperblock())
	f.Fuzz(func(t *testing.T, data []byte) {
		sb := make([]byte, superSize)
		copy(sb, data)
		copy(sb[0x40:], superMagic)
		copy(sb[0x30:], []byte{0, 0, 1, 0, 0, 0, 0, 0}) // bytenr 64 KiB
		sb[0xc4], sb[0xc5] = 0, 0                       // crc32c
		copy(sb, crc32cSum(sb[superCsumEnd:]))
		if _, err := parseSuperblock(sb, uint64(superOffsets[0])); err != nil {
			return
		}
		fs, err := newSynthFS(t, buildImage(sb))
		if err != nil {
			return
		}
		_ = fs.RootTree().Walk(Key{}, MaxKey, func(Item) error { return nil })
	})
}
