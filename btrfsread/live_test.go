package btrfsread

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefresh: on an image the kernel has mounted read-write, Refresh
// returns the same view until a commit, then a newer one; a subvolume
// deleted since is ErrDeleted there, a renamed one is found by id under its
// new path; Retry passes an error of the newest view through.
func TestRefresh(t *testing.T) {
	requireTools(t, true, "mkfs.btrfs", "btrfs")
	img := newTestImage(t, 300)
	mnt := mountImage(t, img, "")
	run(t, "btrfs", "subvolume", "create", filepath.Join(mnt, "sv"))
	writeFile(t, filepath.Join(mnt, "sv", "f"), []byte("data"))
	run(t, "btrfs", "subvolume", "snapshot", "-r", filepath.Join(mnt, "sv"), filepath.Join(mnt, "gone"))
	run(t, "btrfs", "subvolume", "snapshot", "-r", filepath.Join(mnt, "sv"), filepath.Join(mnt, "old-name"))
	run(t, "btrfs", "filesystem", "sync", mnt)

	fs, err := Open(img)
	must(t, err)
	defer fs.Close()
	gone, err := fs.FindSubvolume("gone")
	must(t, err)
	renamed, err := fs.FindSubvolume("old-name")
	must(t, err)
	if v, err := fs.Refresh(); err != nil || v != fs || fs.Latest() != fs {
		t.Fatalf("Refresh without a commit = %p, %v; want the same view %p", v, err, fs)
	}

	run(t, "btrfs", "subvolume", "delete", filepath.Join(mnt, "gone"))
	must(t, os.Rename(filepath.Join(mnt, "old-name"), filepath.Join(mnt, "new-name")))
	run(t, "btrfs", "filesystem", "sync", mnt)
	v, err := fs.Refresh()
	must(t, err)
	if v == fs || v.Generation() <= fs.Generation() || fs.Latest() != v || !v.SameFilesystem(fs) {
		t.Fatalf("Refresh after a commit: generation %d after %d", v.Generation(), fs.Generation())
	}
	_, err = gone.In(v)
	if !errors.Is(err, ErrDeleted) || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"gone"`) {
		t.Errorf("deleted subvolume at the newer view: %v, want ErrDeleted naming it", err)
	}
	r, err := renamed.In(v)
	if err != nil || r.Path != "new-name" || r.ID != renamed.ID {
		t.Errorf("renamed subvolume at the newer view: %+v, %v", r, err)
	}

	bad := &CorruptError{Logical: 0x1234, Reason: "test"}
	calls := 0
	err = fs.Retry(func(*FS) error { calls++; return bad })
	if !errors.Is(err, bad) || calls != 2 {
		t.Errorf("Retry of a block bad at every view: %v after %d calls, want it after 2 (old view, newest view)", err, calls)
	}
}
