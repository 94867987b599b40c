package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"sendfs/internal/testenv"
	"sendfs/internal/testimage"
)

// TestMain builds bin/sendfs once per test binary, into a temp dir that is
// removed afterwards.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sendfs-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	reapStale()
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binErr   error
	keepImgs = os.Getenv("SENDFS_KEEP") != ""
)

// sendfsBinary returns the path of a sendfs binary built from ./cmd/sendfs
// (once per test binary), or $SENDFS_BIN when set (to test a given build).
func sendfsBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if binPath = os.Getenv("SENDFS_BIN"); binPath != "" {
			return
		}
		binPath = filepath.Join(binDir, "sendfs")
		cmd := exec.Command("go", "build", "-o", binPath, "sendfs/cmd/sendfs")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/sendfs: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// requireRoot fails (under CI=true) or skips the test when the kernel oracle
// is not available: root, loop devices, btrfs in the kernel, btrfs-progs.
func requireRoot(t testing.TB) {
	t.Helper()
	if msg := oracleMissing(); msg != "" {
		testenv.Unavailable(t, "kernel oracle (root, loop devices, btrfs, btrfs-progs): "+msg)
	}
}

var (
	oracleOnce sync.Once
	oracleMsg  string
)

func oracleMissing() string {
	oracleOnce.Do(func() {
		switch {
		case os.Geteuid() != 0:
			oracleMsg = "not running as root"
		case !exists("/dev/loop-control"):
			oracleMsg = "no /dev/loop-control"
		default:
			for _, tool := range []string{"mkfs.btrfs", "btrfs", "losetup", "setfattr", "setfacl"} {
				if _, err := exec.LookPath(tool); err != nil {
					oracleMsg = tool + " not installed (make deps)"
					return
				}
			}
			fsList, _ := os.ReadFile("/proc/filesystems")
			if !bytes.Contains(fsList, []byte("btrfs")) {
				// btrfs may be a module not loaded yet.
				exec.Command("modprobe", "btrfs").Run()
				fsList, _ = os.ReadFile("/proc/filesystems")
				if !bytes.Contains(fsList, []byte("btrfs")) {
					oracleMsg = "btrfs not in /proc/filesystems"
				}
			}
		}
	})
	return oracleMsg
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// The command runners of every test: commands are killed after
// testimage.CommandTimeout, errors carry the end of stderr.
var (
	run       = testimage.Run
	runErr    = testimage.RunErr
	command   = testimage.Command
	lastLines = testimage.LastLines
)

// fsOpts describes a test filesystem.
type fsOpts struct {
	Devices   int      // number of image files / loop devices; 0 means 1
	Size      int64    // bytes per image (sparse); 0 means 8 GiB
	MkfsArgs  []string // extra mkfs.btrfs args: --csum xxhash, -n 16k, -d raid1, -O ^no-holes
	MountOpts string   // mount -o options, e.g. "compress=zstd"
}

// btrfsFS is a btrfs filesystem on loop devices made by a test.
type btrfsFS struct{ *testimage.FS }

// newFS makes a btrfs filesystem on sparse image files under the test's temp
// dir and mounts it. Everything is undone in t.Cleanup, also on failure.
func newFS(t testing.TB, opts fsOpts) *btrfsFS {
	t.Helper()
	requireRoot(t)
	if opts.Devices == 0 {
		opts.Devices = 1
	}
	if opts.Size == 0 {
		opts.Size = 8 << 30
	}
	dir := t.TempDir()
	if keepImgs {
		d, err := os.MkdirTemp("", "sendfs-keep-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
		t.Logf("SENDFS_KEEP: images of %s kept in %s", t.Name(), dir)
	}
	if err := markOwner(dir); err != nil {
		t.Fatal(err)
	}
	return &btrfsFS{testimage.New(t, dir, opts.Devices, opts.Size, opts.MkfsArgs, opts.MountOpts)}
}

// unmount unmounts the filesystem and leaves its loop devices attached, so
// that it can be mounted again (see remountRO).
func unmount(t testing.TB, fs *btrfsFS) {
	t.Helper()
	fs.Unmount(t)
}

// remountRO unmounts the filesystem if needed and mounts it read-only: the
// images then stay as they are on disk while sendfs reads them and the tests
// compare against the snapshots.
func remountRO(t testing.TB, fs *btrfsFS) {
	t.Helper()
	fs.Unmount(t)
	fs.Mount(t, true)
}

// path returns the absolute path of rel inside the mounted filesystem.
func (fs *btrfsFS) path(rel string) string { return filepath.Join(fs.Mnt, rel) }

// subvolCreate creates the subvolume rel (a path from the top level),
// creating its parent directories.
func subvolCreate(t testing.TB, fs *btrfsFS, rel string) string {
	t.Helper()
	p := fs.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "btrfs", "subvolume", "create", p)
	return p
}

// snapshotRO makes a read-only snapshot of src (a path from the top level)
// at name (a path from the top level, e.g. "snaps/s1"), and returns its
// absolute path.
func snapshotRO(t testing.TB, fs *btrfsFS, src, name string) string {
	t.Helper()
	p := fs.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "btrfs", "subvolume", "snapshot", "-r", fs.path(src), p)
	return p
}

// syncFS commits the filesystem's current transaction.
func syncFS(t testing.TB, fs *btrfsFS) {
	t.Helper()
	run(t, "btrfs", "filesystem", "sync", fs.Mnt)
}
