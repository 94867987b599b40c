package testimage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sendfs/internal/mountinfo"
)

// TestReleased: a two-device filesystem is made, written, remounted
// read-only and released when its test ends, leaving no mount and no loop
// device; Release after an early Release does nothing.
func TestReleased(t *testing.T) {
	Require(t, true, "mkfs.btrfs", "btrfs")
	var fs *FS
	t.Run("make", func(t *testing.T) {
		fs = New(t, t.TempDir(), 2, 256<<20, []string{"-d", "raid1", "-m", "raid1"}, "noatime")
		if err := os.WriteFile(filepath.Join(fs.Mnt, "f"), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
		fs.Unmount(t)
		fs.Mount(t, true)
		if e, ok, err := mountinfo.Find(fs.Mnt); err != nil || !ok || !strings.HasPrefix(e.Options+",", "ro,") {
			t.Fatalf("mount of %s: %+v %v %v, want a read-only mount", fs.Mnt, e, ok, err)
		}
		if got := strings.Count(Run(t, "btrfs", "filesystem", "show", fs.Mnt), "devid"); got != 2 {
			t.Fatalf("%d devices, want 2", got)
		}
	})
	if _, ok, err := mountinfo.Find(fs.Mnt); ok || err != nil {
		t.Errorf("%s still mounted after its test (%v)", fs.Mnt, err)
	}
	for _, img := range fs.Images {
		if out := Run(t, "losetup", "-j", img); out != "" {
			t.Errorf("loop device left attached: %s", out)
		}
	}
	t.Run("release twice", func(t *testing.T) {
		fs := Attach(t, Images(t, t.TempDir(), 1, 1<<20), "", true)
		fs.Release(t)
		fs.Release(t)
	})
}
