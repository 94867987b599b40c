package test

import (
	"testing"
)

// TestSendVariants runs the scenarios most sensitive to the on-disk layout
// (holes, prealloc, inline and compressed extents, reflinks, extrefs) on
// filesystems made and mounted differently from the default: explicit hole
// extents, other node sizes and checksums, forced compression, and
// multi-device RAID profiles read from several images.
func TestSendVariants(t *testing.T) {
	requireRoot(t)
	compressedData := protocolVariants[1:] // LZO extents, sent as stored
	variants := []struct {
		name      string
		opts      fsOpts
		protocols []sendVariant // checked too, besides protocol 1
	}{
		{"holes-64k-xxhash", fsOpts{MkfsArgs: []string{"-O", "^no-holes", "-n", "64k", "--csum", "xxhash"}}, nil},
		{"raid1-sha256-compress-force-lzo", fsOpts{Devices: 2, Size: 6 << 30, MkfsArgs: []string{"-d", "raid1", "-m", "raid1", "--csum", "sha256"}, MountOpts: "compress-force=lzo"}, compressedData},
		{"raid5-blake2-4k-nodes", fsOpts{Devices: 3, Size: 4 << 30, MkfsArgs: []string{"-d", "raid5", "-m", "raid1c3", "--csum", "blake2", "-n", "4k"}}, nil},
	}
	scenarios := selectScenarios(t, variantScenarios())
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			c := buildCorpus(t, v.opts, scenarios)
			checkCorpus(t, c, scenarios)
			checkVariants(t, c, scenarios, v.protocols, false)
		})
	}
}

// variantScenarios picks scenarios by name from both corpora.
func variantScenarios() []scenario {
	want := map[string]bool{}
	for _, n := range []string{
		"file-types", "inline-limit", "sparse-big", "sparse-tail", "fallocate", "compressed", "reflinks",
		"many-extents", "hardlinks-600-extrefs", "xattrs-user",
		"punch-hole-unaligned", "truncate-down-then-up", "truncate-up", "fallocate-in-hole", "fallocate-beyond-eof",
		"fill-hole", "write-after-eof-gap", "inline-grows", "compressed-change", "reflink-into-existing",
		"swap-two-dirs", "chain-data-edits",
	} {
		want[n] = true
	}
	var out []scenario
	for _, sc := range append(fullCorpus(), incrementalCorpus()...) {
		if want[sc.name] {
			out = append(out, sc)
			delete(want, sc.name)
		}
	}
	if len(want) > 0 {
		panic("variantScenarios: unknown scenario names")
	}
	return out
}
