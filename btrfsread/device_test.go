package btrfsread

import (
	"testing"
)

func TestOpenVariants(t *testing.T) {
	cases := []struct {
		name string
		n    int
		args []string
	}{
		{"default", 1, nil},
		{"no-no-holes", 1, []string{"-O", "^no-holes"}},
		{"xxhash", 1, []string{"--csum", "xxhash"}},
		{"sha256", 1, []string{"--csum", "sha256"}},
		{"blake2", 1, []string{"--csum", "blake2"}},
		{"nodesize16k", 1, []string{"-n", "16k"}},
		{"nodesize64k", 1, []string{"-n", "64k"}},
		{"dup", 1, []string{"-m", "dup", "-d", "single"}},
		{"mixed", 1, []string{"--mixed"}},
		{"raid0", 2, []string{"-d", "raid0", "-m", "raid0"}},
		{"raid1", 2, []string{"-d", "raid1", "-m", "raid1"}},
		{"raid10", 4, []string{"-d", "raid10", "-m", "raid10"}},
		{"raid1c3", 3, []string{"-d", "raid1c3", "-m", "raid1c3"}},
		{"raid1c4", 4, []string{"-d", "raid1c4", "-m", "raid1c4"}},
		{"raid5", 3, []string{"-d", "raid5", "-m", "raid5"}},
		{"raid6", 4, []string{"-d", "raid6", "-m", "raid6"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			imgs := newTestImages(t, c.n, 300, c.args...)
			fs, err := Open(imgs...)
			if err != nil {
				t.Fatal(err)
			}
			defer fs.Close()
			checkTreeAgainstDump(t, imgs, fs.RootTree(), "root")
			checkTreeAgainstDump(t, imgs, fs.chunkTree(), "chunk")
		})
	}
}

// TestOpenBlockDevice opens loop devices, whose size comes from seeking to
// the end (stat reports 0 for block devices).
func TestOpenBlockDevice(t *testing.T) {
	imgs := newTestImages(t, 2, 300, "-d", "raid1", "-m", "raid1")
	fs, err := Open(attachLoop(t, imgs[0]), attachLoop(t, imgs[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	checkTreeAgainstDump(t, imgs, fs.RootTree(), "root")
}
