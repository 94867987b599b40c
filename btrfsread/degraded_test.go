package btrfsread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// raidFile makes a filesystem of profile on devs images with one 1 MiB
// random file (inode 257 of the top level) written by the kernel, and
// returns the images, the file's bytes and its first data block's logical
// address.
func raidFile(t *testing.T, profile string, devs int) ([]string, []byte, uint64) {
	t.Helper()
	imgs := newTestImages(t, devs, 300, "-d", profile, "-m", profile)
	data := writeRandomFile(t, imgs, 1<<20, uint64(devs), 11)
	fs, err := Open(imgs...)
	must(t, err)
	defer fs.Close()
	it, err := fsTreeForTest(t, fs, FSTreeID).Search(Key{257, ExtentDataKey, 0})
	must(t, err)
	return imgs, data, binary.LittleEndian.Uint64(it.Data[21:])
}

// writeRandomFile mounts the filesystem on imgs and writes n random bytes
// (seeded) to the file "data" in its top level, inode 257, and returns them.
func writeRandomFile(t *testing.T, imgs []string, n int, seed1, seed2 uint64) []byte {
	t.Helper()
	mnt := mountImages(t, imgs, "")
	data := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed1, seed2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	must(t, os.WriteFile(filepath.Join(mnt, "data"), data, 0o644))
	unmount(t, mnt)
	return data
}

// readTopFile reads inode 257 of the top level of the filesystem on imgs,
// opened degraded.
func readTopFile(t *testing.T, imgs []string, n int) ([]byte, error) {
	t.Helper()
	fs, err := OpenOptions{Degraded: true}.Open(imgs...)
	must(t, err)
	defer fs.Close()
	sv, err := fs.Subvolume(FSTreeID)
	must(t, err)
	got := make([]byte, n)
	_, err = sv.ReadAt(257, got, 0)
	return got, err
}

// TestDegradedParityCorrupt drops the member holding a file's first data
// block, so that it must be rebuilt: from P, or for RAID6 from Q when P is
// corrupt; with every parity corrupt the read fails with a checksum error
// and never returns the wrong bytes.
func TestDegradedParityCorrupt(t *testing.T) {
	for _, c := range []struct {
		profile string
		devs    int
	}{{"raid5", 3}, {"raid6", 4}} {
		t.Run(c.profile, func(t *testing.T) {
			imgs, data, logical := raidFile(t, c.profile, c.devs)
			fs, err := Open(imgs...)
			must(t, err)
			places := physicalPlaces(t, fs, logical) // data, P[, Q]
			fs.Close()
			rest := slices.DeleteFunc(slices.Clone(imgs), func(s string) bool { return s == places[0].s.dev.Name })

			got, err := readTopFile(t, rest, len(data))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("rebuilt from parity: %v (equal: %v)", err, bytes.Equal(got, data))
			}
			for i, pl := range places[1:] {
				corruptAt(t, pl, 100+uint64(i)*100)
				got, err = readTopFile(t, rest, len(data))
				lastParity := i == len(places)-2
				switch {
				case lastParity && (!errors.Is(err, ErrDataChecksum) || !strings.Contains(err.Error(), "inode 257 file offset 0 ")):
					t.Fatalf("every parity corrupt: %v, want a checksum error at file offset 0", err)
				case !lastParity && (err != nil || !bytes.Equal(got, data)):
					t.Fatalf("P corrupt, rebuilt from Q: %v (equal: %v)", err, bytes.Equal(got, data))
				}
				t.Log(err)
			}
		})
	}
}

// TestOpenDegraded: without Degraded a missing member is refused; with it
// the filesystem opens, names the missing devids, and reads through
// another mirror.
func TestOpenDegraded(t *testing.T) {
	imgs, data, _ := raidFile(t, "raid1", 2)
	_, err := Open(imgs[1])
	if !errors.Is(err, ErrMissingDevice) || !strings.Contains(err.Error(), "devid 1 was not given") {
		t.Fatalf("open without devid 1: %v", err)
	}
	fs, err := OpenOptions{Degraded: true}.Open(imgs[1])
	must(t, err)
	defer fs.Close()
	if got := fs.MissingDevids(); !slices.Equal(got, []uint64{1}) {
		t.Errorf("MissingDevids = %v, want [1]", got)
	}
	if w := fs.Warnings(); len(w) != 1 || !strings.Contains(w[0], "missing, reading degraded: devid 1") {
		t.Errorf("Warnings = %q, want the missing devid (and no lost chunk: raid1)", w)
	}
	if got, err := readTopFile(t, imgs[1:], len(data)); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read through the other mirror: %v", err)
	}
}

// TestFindMembers finds the other members of an array beside one image
// file, and in a directory given alone; a directory with two filesystems
// needs a member to choose.
func TestFindMembers(t *testing.T) {
	imgs := newTestImages(t, 3, 300, "-d", "raid1", "-m", "raid1")
	want := []string{imgs[1], imgs[0], imgs[2]}
	got, err := ScanOptions{}.FindMembers(imgs[1:2])
	must(t, err)
	if !slices.Equal(got, want) {
		t.Errorf("FindMembers(one member) = %v, want %v", got, want)
	}
	dir := filepath.Dir(imgs[0])
	got, err = ScanOptions{}.FindMembers([]string{dir})
	must(t, err)
	if !slices.Equal(got, imgs) {
		t.Errorf("FindMembers(dir) = %v, want %v", got, imgs)
	}
	other := newTestImage(t, 300)
	must(t, os.Rename(other, filepath.Join(dir, "other.img")))
	if _, err := (ScanOptions{}).FindMembers([]string{dir}); err == nil || !strings.Contains(err.Error(), "members of 2 filesystems") {
		t.Errorf("FindMembers(dir with two filesystems) = %v, want an error", err)
	}
	got, err = ScanOptions{}.FindMembers([]string{imgs[2], dir})
	must(t, err)
	if !slices.Equal(got, []string{imgs[2], imgs[0], imgs[1]}) {
		t.Errorf("FindMembers(member, dir) = %v", got)
	}
}

// TestFindMembersBlockDevices finds members attached to loop devices among
// the system's block devices.
func TestFindMembersBlockDevices(t *testing.T) {
	imgs := newTestImages(t, 2, 300, "-d", "raid1", "-m", "raid1")
	loop := attachLoop(t, imgs[1])
	given := filepath.Join(t.TempDir(), "only.img")
	must(t, os.Rename(imgs[0], given)) // alone in its directory
	got, err := ScanOptions{BlockDevices: true}.FindMembers([]string{given})
	must(t, err)
	if !slices.Equal(got, []string{given, loop}) {
		t.Errorf("FindMembers with block devices = %v, want [%s %s]", got, given, loop)
	}
}
