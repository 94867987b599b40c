package btrfsread

import (
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// patchSuperblocks applies edit to every crc32c superblock copy of img and
// fixes the checksums, to fake features mkfs cannot make.
func patchSuperblocks(t testing.TB, img string, edit func(*rawSuperblock)) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	must(t, err)
	for _, off := range superOffsets {
		if off+superSize > size {
			break
		}
		sb := make([]byte, superSize)
		_, err := f.ReadAt(sb, off)
		must(t, err)
		_, err = f.WriteAt(patchSuperblock(sb, edit), off)
		must(t, err)
	}
}

func TestOpenErrors(t *testing.T) {
	setIncompat := func(bit uint64) func(*rawSuperblock) {
		return func(r *rawSuperblock) { r.IncompatFlags |= bit }
	}
	cases := []struct {
		name     string
		make     func(t *testing.T) []string
		sentinel error
		msg      string
	}{
		{"random file", func(t *testing.T) []string {
			p := filepath.Join(t.TempDir(), "random")
			b := make([]byte, 1<<20)
			rand.Read(b)
			must(t, os.WriteFile(p, b, 0o600))
			return []string{p}
		}, ErrNotBtrfs, "random is not a btrfs filesystem (no valid superblock)"},
		{"empty file", func(t *testing.T) []string {
			p := filepath.Join(t.TempDir(), "empty")
			must(t, os.WriteFile(p, nil, 0o600))
			return []string{p}
		}, ErrNotBtrfs, "empty is not a btrfs filesystem"},
		{"bad checksum everywhere", func(t *testing.T) []string {
			img := newTestImage(t, 300)
			patchSuperblocks(t, img, func(*rawSuperblock) {})
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			must(t, err)
			defer f.Close()
			for _, off := range superOffsets[:2] {
				_, err := f.WriteAt([]byte{0xde, 0xad}, off)
				must(t, err)
			}
			return []string{img}
		}, ErrNotBtrfs, "crc32c checksum mismatch"},
		{"truncated image", func(t *testing.T) []string {
			img := newTestImage(t, 300)
			must(t, os.Truncate(img, 100<<20))
			return []string{img}
		}, io.ErrUnexpectedEOF, "dev0.img: image is truncated"},
		{"missing raid1 member", func(t *testing.T) []string {
			return newTestImages(t, 2, 300, "-d", "raid1", "-m", "raid1")[1:]
		}, ErrMissingDevice, "devid 1 was not given"},
		{"missing raid0 member", func(t *testing.T) []string {
			return newTestImages(t, 3, 300, "-d", "raid0", "-m", "raid0")[:2]
		}, ErrMissingDevice, "devid 3 was not given"},
		{"missing member without chunks", func(t *testing.T) []string {
			return newTestImages(t, 2, 300, "-d", "single", "-m", "single")[:1]
		}, ErrMissingDevice, "devid 2 was not given (1 of 2 devices given)"},
		{"raid-stripe-tree", func(t *testing.T) []string {
			img := newTestImage(t, 300)
			patchSuperblocks(t, img, setIncompat(incompatRaidStripeTree))
			return []string{img}
		}, ErrUnsupported, "filesystem uses incompat feature raid-stripe-tree, which sendfs cannot read"},
		{"zoned", func(t *testing.T) []string {
			img := newTestImage(t, 300)
			patchSuperblocks(t, img, setIncompat(incompatZoned))
			return []string{img}
		}, ErrUnsupported, "incompat feature zoned"},
		{"unknown incompat bit", func(t *testing.T) []string {
			img := newTestImage(t, 300)
			patchSuperblocks(t, img, setIncompat(1<<15))
			return []string{img}
		}, ErrUnsupported, "unknown bit 15"},
		{"unknown csum type", func(t *testing.T) []string {
			img := newTestImage(t, 300)
			patchSuperblocks(t, img, func(r *rawSuperblock) { r.CsumType = 9 })
			return []string{img}
		}, ErrUnsupported, "checksum type 9"},
		{"seeding", func(t *testing.T) []string {
			requireTools(t, false, "btrfstune")
			img := newTestImage(t, 300)
			run(t, "btrfstune", "-S", "1", img)
			return []string{img}
		}, ErrUnsupported, "superblock flag seeding"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			paths := c.make(t)
			fs, err := Open(paths...)
			if err == nil {
				fs.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, c.sentinel) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Open: %v\nwant an error matching %v containing %q", err, c.sentinel, c.msg)
			}
			t.Log(err)
		})
	}
}

func TestOpenDifferentFilesystems(t *testing.T) {
	a, b := newTestImage(t, 300), newTestImage(t, 300)
	_, err := Open(a, b)
	if err == nil || !strings.Contains(err.Error(), "different filesystems") {
		t.Errorf("Open of two filesystems: %v", err)
	}
	_, err = Open(a, a)
	if err == nil || !strings.Contains(err.Error(), "same member device") {
		t.Errorf("Open of one device twice: %v", err)
	}
}

// TestMetadataUUID reads a filesystem whose fsid was changed with
// btrfstune -m: tree blocks keep the old fsid as metadata_uuid.
func TestMetadataUUID(t *testing.T) {
	requireTools(t, false, "btrfstune")
	img := manyFilesImage(t, 500)
	run(t, "btrfstune", "-m", img)
	fs, err := Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	info := fs.Info()
	if info.Incompat&incompatMetadataUUID == 0 || info.FSID == info.MetadataUUID {
		t.Fatalf("btrfstune -m did not set metadata_uuid: %+v", info)
	}
	checkTreeAgainstDump(t, []string{img}, fsTreeForTest(t, fs, FSTreeID), "5")
}

func TestInfo(t *testing.T) {
	img := newTestImage(t, 300, "-L", "mylabel", "-n", "32k", "--csum", "xxhash")
	fs, err := Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	i := fs.Info()
	if i.Label != "mylabel" || i.NodeSize != 32768 || i.SectorSize != 4096 || i.CsumType != CsumXXHash64 ||
		i.NumDevices != 1 || i.TotalBytes != 300<<20 || i.Generation == 0 || i.FSID.IsZero() || i.FSID != i.MetadataUUID {
		t.Errorf("Info: %+v", i)
	}
	if fs.csumSize() != 8 || len(fs.checksum(new([32]byte), []byte("x"))) != 8 {
		t.Errorf("xxhash csum size %d", fs.csumSize())
	}
}
