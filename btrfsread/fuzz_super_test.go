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
		sb = patchSuperblock(sb, func(r *rawSuperblock) {
			copy(r.Magic[:], superMagic)
			r.Bytenr = uint64(superOffsets[0])
			r.CsumType = 0 // crc32c
		})
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
