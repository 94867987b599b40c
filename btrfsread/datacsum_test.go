package btrfsread

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// fileLogical returns the logical address of the first extent of a file on a
// mounted btrfs, from filefrag (which reports btrfs logical addresses).
func fileLogical(t testing.TB, path string) uint64 {
	t.Helper()
	out := run(t, "filefrag", "-v", "-b4096", path)
	m := regexp.MustCompile(`(?m)^\s*0:\s+0\.\.\s*\d+:\s+(\d+)\.\.`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no first extent in filefrag output:\n%s", out)
	}
	block, err := strconv.ParseUint(m[1], 10, 64)
	noErr(t, err)
	return block * 4096
}

// physicalCopies returns the physical offset of each copy of the block at
// logical, from btrfs-map-logical.
func physicalCopies(t testing.TB, img string, logical uint64) []int64 {
	t.Helper()
	out := run(t, "btrfs-map-logical", "-l", strconv.FormatUint(logical, 10), "-b", "4096", img)
	var phys []int64
	for _, m := range regexp.MustCompile(`mirror (\d+) logical \d+ physical (\d+)`).FindAllStringSubmatch(out, -1) {
		p, err := strconv.ParseInt(m[2], 10, 64)
		noErr(t, err)
		phys = append(phys, p)
	}
	if len(phys) != 2 {
		t.Fatalf("want 2 copies of 0x%x:\n%s", logical, out)
	}
	return phys
}

// smash overwrites 16 bytes of the image at physical offset off.
func smash(t testing.TB, img string, off int64) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	noErr(t, err)
	defer f.Close()
	_, err = f.WriteAt(bytes.Repeat([]byte{0xa5}, 16), off+100)
	noErr(t, err)
}

// TestDataMirrorFallback corrupts data blocks on a -d dup image: with one
// good copy of every sector the data still reads right; with none the error
// names subvolume, inode, file offset and logical address.
func TestDataMirrorFallback(t *testing.T) {
	requireTools(t, true, "mkfs.btrfs", "btrfs", "btrfs-map-logical", "filefrag")
	img := newTestImage(t, 300, "-d", "dup", "-m", "dup")
	mnt := mountImage(t, img, "")
	r := highRand()
	plain := randomBytes(r, 64<<10)
	writeFile(t, filepath.Join(mnt, "plain"), plain)
	packed := []byte(hex.EncodeToString(randomBytes(r, 64<<10))) // compresses to about half
	writeFile(t, filepath.Join(mnt, "packed"), nil)
	run(t, "btrfs", "property", "set", filepath.Join(mnt, "packed"), "compression", "zstd")
	writeFile(t, filepath.Join(mnt, "packed"), packed)
	run(t, "sync")
	plainL, packedL := fileLogical(t, filepath.Join(mnt, "plain")), fileLogical(t, filepath.Join(mnt, "packed"))
	if out := run(t, "filefrag", "-v", filepath.Join(mnt, "packed")); !strings.Contains(out, "encoded") {
		t.Fatalf("packed is not compressed:\n%s", out)
	}
	unmount(t, mnt)

	read := func(name string) ([]byte, uint64, error) {
		fs, err := Open(img)
		noErr(t, err)
		defer fs.Close()
		sv, err := fs.Subvolume(FSTreeID)
		noErr(t, err)
		ino, err := sv.Lookup(name)
		noErr(t, err)
		buf := make([]byte, 200<<10)
		n, err := sv.ReadAt(ino, buf, 0)
		if err == io.EOF {
			err = nil
		}
		return buf[:n], ino, err
	}
	// Copy 1 of sector 0 and copy 2 of sector 1 are bad: each sector still
	// has one good copy.
	for _, l := range []uint64{plainL, packedL} {
		smash(t, img, physicalCopies(t, img, l)[0])
		smash(t, img, physicalCopies(t, img, l+4096)[1])
	}
	for name, want := range map[string][]byte{"plain": plain, "packed": packed} {
		got, _, err := read(name)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s with one good copy per sector: err %v, equal %v", name, err, bytes.Equal(got, want))
		}
	}
	// Both copies of sector 2 are bad.
	for _, l := range []uint64{plainL + 8192, packedL + 8192} {
		for _, p := range physicalCopies(t, img, l) {
			smash(t, img, p)
		}
	}
	for name, c := range map[string]struct{ fileOffset, logical uint64 }{
		"plain":  {8192, plainL + 8192},
		"packed": {0, packedL + 8192}, // a compressed extent is read whole
	} {
		_, ino, err := read(name)
		var de *DataError
		if !errors.As(err, &de) || de.Subvol != FSTreeID || de.Ino != ino || de.FileOffset != c.fileOffset || de.Logical != c.logical {
			t.Fatalf("%s with no good copy: err %#v", name, err)
		}
		msg := fmt.Sprintf("subvolume 5 inode %d file offset %d (logical 0x%x)", ino, c.fileOffset, c.logical)
		if !strings.Contains(err.Error(), msg) || !errors.Is(err, ErrDataChecksum) {
			t.Errorf("%s: error %q does not say %q, or is not ErrDataChecksum", name, err, msg)
		}
		t.Logf("%s: %v", name, err)
	}
}
