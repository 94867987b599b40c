package btrfsread

import (
	"path/filepath"
	"sync"
	"testing"

	"sendfs/internal/testimage"
)

// The image builders of btrfsread's tests, on internal/testimage: images
// made by mkfs.btrfs (no root needed), mounted on loop devices when a test
// needs the kernel to write them. They fail instead of skipping when
// CI=true.

var (
	// requireTools stops the test unless the programs are installed and,
	// with root set, it runs as root.
	requireTools = testimage.Require
	// run runs a command and fails the test with its stderr on error.
	run = testimage.Run
)

// newTestImage makes a sizeMB image file under t.TempDir() and formats it
// with mkfs.btrfs mkfsArgs.
func newTestImage(t testing.TB, sizeMB int, mkfsArgs ...string) string {
	t.Helper()
	return newTestImages(t, 1, sizeMB, mkfsArgs...)[0]
}

// newTestImages makes n image files of sizeMB each and formats them as one
// multi-device filesystem (e.g. mkfsArgs "-d", "raid1", "-m", "raid1").
func newTestImages(t testing.TB, n, sizeMB int, mkfsArgs ...string) []string {
	t.Helper()
	imgs := testimage.Images(t, t.TempDir(), n, int64(sizeMB)<<20)
	testimage.Mkfs(t, mkfsArgs, imgs...)
	return imgs
}

// mountImage mounts a single-device image with mount options opts ("" for
// none) and returns the mount point. The mount and its loop device are
// removed at the end of the test, or earlier by unmount.
func mountImage(t testing.TB, img, opts string) string {
	t.Helper()
	return mountImages(t, []string{img}, opts)
}

// mountImages attaches every image of one filesystem to its own loop device
// and mounts them together.
func mountImages(t testing.TB, imgs []string, opts string) string {
	t.Helper()
	fs := testimage.Attach(t, imgs, filepath.Join(t.TempDir(), "mnt"), false)
	fs.MountOpts = opts
	fs.Mount(t, false)
	mounts.Store(fs.Mnt, fs)
	return fs.Mnt
}

// mounts maps mount points made by mountImages to their filesystems.
var mounts sync.Map

// unmount unmounts a mount point made by mountImage and detaches its loop
// devices, so that the image files can be read consistently.
func unmount(t testing.TB, dir string) {
	t.Helper()
	fs, ok := mounts.LoadAndDelete(dir)
	if !ok {
		t.Fatalf("unmount %s: not mounted by mountImage", dir)
	}
	fs.(*testimage.FS).Release(t)
}

// attachLoop attaches img to a free loop device for the rest of the test
// and returns the device path.
func attachLoop(t testing.TB, img string) string {
	t.Helper()
	return testimage.Attach(t, []string{img}, "", false).Loops[0]
}
