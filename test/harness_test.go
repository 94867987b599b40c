package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sendfs/internal/testenv"
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

// run runs a command and fails the test with its output when it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runErr runs a command and returns its stdout; the error carries the
// command line and its stderr.
func runErr(name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd, cancel := command(name, args...)
	defer cancel()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, lastLines(stderr.String(), 20))
	}
	return stdout.String(), nil
}

// commandTimeout bounds every command a test runs: a hung sendfs or
// receive fails its test instead of reaching go test's timeout, which would
// exit without running the cleanups (leaving mounts and loop devices).
const commandTimeout = 10 * time.Minute

// command is exec.Command killed after commandTimeout; call cancel once it
// has run.
func command(name string, args ...string) (cmd *exec.Cmd, cancel func()) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	cmd = exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 10 * time.Second
	return cmd, cancel
}

// lastLines keeps the last n lines of s (error output can be long).
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// fsOpts describes a test filesystem.
type fsOpts struct {
	Devices   int      // number of image files / loop devices; 0 means 1
	Size      int64    // bytes per image (sparse); 0 means 8 GiB
	MkfsArgs  []string // extra mkfs.btrfs args: --csum xxhash, -n 16k, -d raid1, -O ^no-holes
	MountOpts string   // mount -o options, e.g. "compress=zstd"
}

// btrfsFS is a btrfs filesystem on loop devices made by a test.
type btrfsFS struct {
	Images  []string // the image files, in device order
	Loops   []string // their loop devices
	Mnt     string   // mount point (mounted while mounted is true)
	opts    fsOpts
	mounted bool
}

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
	fs := &btrfsFS{Mnt: filepath.Join(dir, "mnt"), opts: opts}
	if err := os.Mkdir(fs.Mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := markOwner(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.destroy(t) })
	for i := 0; i < opts.Devices; i++ {
		img := filepath.Join(dir, fmt.Sprintf("dev%d.img", i))
		f, err := os.Create(img)
		if err == nil {
			err = f.Truncate(opts.Size)
			f.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		fs.Images = append(fs.Images, img)
		loop := strings.TrimSpace(run(t, "losetup", "--find", "--show", img))
		fs.Loops = append(fs.Loops, loop)
	}
	args := append([]string{"-q", "-f"}, opts.MkfsArgs...)
	run(t, "mkfs.btrfs", append(args, fs.Loops...)...)
	fs.mount(t, false)
	return fs
}

// mount mounts the filesystem (read-only if ro) at fs.Mnt.
func (fs *btrfsFS) mount(t testing.TB, ro bool) {
	t.Helper()
	var opts []string
	if ro {
		opts = append(opts, "ro")
	}
	if fs.opts.MountOpts != "" {
		opts = append(opts, fs.opts.MountOpts)
	}
	for _, l := range fs.Loops[1:] {
		opts = append(opts, "device="+l)
	}
	args := []string{"-t", "btrfs"}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, ","))
	}
	run(t, "mount", append(args, fs.Loops[0], fs.Mnt)...)
	fs.mounted = true
}

// unmount unmounts the filesystem and leaves its loop devices attached, so
// that it can be mounted again (see remountRO).
func unmount(t testing.TB, fs *btrfsFS) {
	t.Helper()
	if !fs.mounted {
		return
	}
	run(t, "umount", fs.Mnt)
	fs.mounted = false
}

// remountRO unmounts the filesystem if needed and mounts it read-only: the
// images then stay as they are on disk while sendfs reads them and the tests
// compare against the snapshots.
func remountRO(t testing.TB, fs *btrfsFS) {
	t.Helper()
	unmount(t, fs)
	fs.mount(t, true)
}

// destroy unmounts and detaches everything fs made; it only reports errors,
// so that the other cleanups still run.
func (fs *btrfsFS) destroy(t testing.TB) {
	if fs.mounted {
		if _, err := runErr("umount", fs.Mnt); err != nil {
			if _, err2 := runErr("umount", "-l", fs.Mnt); err2 != nil {
				t.Errorf("cleanup: %v; lazy: %v", err, err2)
			}
		}
		fs.mounted = false
	}
	for _, l := range fs.Loops {
		// Forget the device in the kernel's btrfs device list, so a later
		// filesystem on the same loop device number is not confused with it.
		runErr("btrfs", "device", "scan", "--forget", l)
		if _, err := runErr("losetup", "-d", l); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	fs.Loops = nil
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
