package btrfsread

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"sendfs/internal/mountinfo"
	"sendfs/internal/testenv"
)

// Helpers that build real btrfs images with btrfs-progs and, when a test
// needs the kernel, mount them on loop devices. They fail instead of
// skipping when CI=true.

// requireTools skips (outside CI) or fails (CI=true) unless the named
// programs are installed and, with root set, the test runs as root.
func requireTools(t testing.TB, root bool, tools ...string) {
	t.Helper()
	why := ""
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			why = tool + " is not installed"
		}
	}
	if root && os.Geteuid() != 0 {
		why = "needs root for loop devices and mount"
	}
	if why == "" {
		return
	}
	testenv.Unavailable(t, why)
}

// run runs a command and fails the test with its output on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

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
	requireTools(t, false, "mkfs.btrfs")
	dir := t.TempDir()
	var imgs []string
	for i := range n {
		img := filepath.Join(dir, fmt.Sprintf("dev%d.img", i))
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, int64(sizeMB)<<20); err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	args := append([]string{"-q", "-f"}, mkfsArgs...)
	run(t, "mkfs.btrfs", append(args, imgs...)...)
	return imgs
}

// mounted is one filesystem mounted by mountImages.
type mounted struct {
	dir   string
	loops []string
	done  atomic.Bool
}

var mountSeq atomic.Int64

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
	requireTools(t, true, "losetup", "mount", "umount")
	m := &mounted{dir: filepath.Join(t.TempDir(), fmt.Sprintf("mnt%d", mountSeq.Add(1)))}
	if err := os.Mkdir(m.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.release(t) })
	var devOpts []string
	for _, img := range imgs {
		loop := strings.TrimSpace(run(t, "losetup", "--find", "--show", img))
		m.loops = append(m.loops, loop)
		devOpts = append(devOpts, "device="+loop)
	}
	if opts != "" {
		devOpts = append(devOpts, opts)
	}
	run(t, "mount", "-t", "btrfs", "-o", strings.Join(devOpts, ","), m.loops[0], m.dir)
	mounts.Store(m.dir, m)
	return m.dir
}

// unmount unmounts a mount point made by mountImage and detaches its loop
// devices, so that the image files can be read consistently.
func unmount(t testing.TB, dir string) {
	t.Helper()
	v, ok := mounts.Load(dir)
	if !ok {
		t.Fatalf("unmount %s: not mounted by mountImage", dir)
	}
	v.(*mounted).release(t)
}

func (m *mounted) release(t testing.TB) {
	if m.done.Swap(true) {
		return
	}
	mounts.Delete(m.dir)
	if m.dir != "" {
		if out, err := exec.Command("umount", m.dir).CombinedOutput(); err != nil && isMounted(m.dir) {
			t.Errorf("umount %s: %v\n%s", m.dir, err, out)
		}
	}
	for _, loop := range m.loops {
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", loop, err, out)
		}
	}
}

func isMounted(dir string) bool {
	_, ok, _ := mountinfo.Find(dir)
	return ok
}

// attachLoop attaches img to a free loop device for the rest of the test
// and returns the device path.
func attachLoop(t testing.TB, img string) string {
	t.Helper()
	requireTools(t, true, "losetup")
	loop := strings.TrimSpace(run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", loop, err, out)
		}
	})
	return loop
}

// mounts maps mount points to their mounted records, for unmount.
var mounts sync.Map
