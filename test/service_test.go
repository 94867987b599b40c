package test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sendfs/internal/mountinfo"
)

// sendfs as a service: the mount helper mount(8) runs for fuse.sendfs (by
// hand, from a scratch fstab with the README's line, and with a bad
// option), and the systemd readiness notification of the README's unit.

// serviceImage is a small filesystem with a writable subvolume and two
// read-only snapshots of it, not mounted by the kernel.
func serviceImage(t *testing.T) *btrfsFS {
	fs := newFS(t, fsOpts{Size: 1 << 30})
	src := subvolCreate(t, fs, "src")
	writeFile(t, filepath.Join(src, "f"), []byte("one\n"))
	mustMkdir(t, fs.path("snaps"))
	snapshotRO(t, fs, "src", "snaps/s.1")
	writeFile(t, filepath.Join(src, "g"), random(100000, 7))
	snapshotRO(t, fs, "src", "snaps/s.2")
	unmount(t, fs)
	return fs
}

// installHelper makes the test's sendfs the one mount.fuse3 finds (it runs
// `sendfs` with the shell's default PATH, whatever the caller's) for the
// duration of the test: a symlink in /usr/local/sbin.
func installHelper(t *testing.T) {
	t.Helper()
	link := "/usr/local/sbin/sendfs"
	if _, err := os.Lstat(link); err == nil {
		t.Fatalf("%s exists: the mount helper test would not run this build; remove it", link)
	}
	must(t, os.MkdirAll(filepath.Dir(link), 0o755))
	must(t, os.Symlink(sendfsBinary(t), link))
	t.Cleanup(func() { os.Remove(link) })
}

// helperMount is a mount made through mount(8): no process of ours to wait
// for, so the test finds the daemon by its mount point.
func helperMount(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "streams")
	must(t, os.Mkdir(dir, 0o755))
	t.Cleanup(func() {
		if isMounted(dir) {
			runErr("umount", "-l", dir)
		}
		for _, pid := range daemonsOf(dir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return dir
}

// daemonsOf lists the sendfs processes serving dir (by command line).
func daemonsOf(dir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 2 && strings.HasSuffix(args[0], "sendfs") && args[1] == "mount" && strings.Contains(string(cmdline), "\x00"+dir+"\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// umountHelper unmounts dir with umount(8) and waits for its daemon to end.
func umountHelper(t *testing.T, dir string) {
	t.Helper()
	if len(daemonsOf(dir)) != 1 {
		t.Errorf("%d sendfs daemons serve %s, want 1", len(daemonsOf(dir)), dir)
	}
	run(t, "umount", dir)
	for deadline := time.Now().Add(30 * time.Second); len(daemonsOf(dir)) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sendfs still serving %s 30s after umount", dir)
		}
	}
}

// readmeLine returns the README line starting with marker, failing the test
// when there is none: the README's examples are what is tested.
func readmeLine(t *testing.T, marker string) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	must(t, err)
	for _, line := range strings.Split(string(readme), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, marker) {
			return line
		}
	}
	t.Fatalf("README.md has no line starting with %q", marker)
	return ""
}

// fromReadme replaces the README's example device, mount point and cache
// directory by the test's.
func fromReadme(line, image, dir, cache string) string {
	return strings.NewReplacer("/dev/sdb1", image, "/srv/streams", dir, "/var/cache/sendfs", cache).Replace(line)
}

func TestMountHelper(t *testing.T) {
	requireFUSE(t)
	installHelper(t)
	fs := serviceImage(t)
	want := sendfsSend(t, fs.Images, "snaps/s.2", "snaps/s.1")

	t.Run("mount", func(t *testing.T) {
		dir := helperMount(t)
		cache := t.TempDir()
		// Returns once the tree answers: the stream is readable at once.
		run(t, "mount", "-t", "fuse.sendfs", fs.Images[0], dir, "-o", "ro,allow_other,all_subvolumes,cache_dir="+cache)
		sameBytes(t, "incremental stream through the helper", want, readFile(t, filepath.Join(dir, "snapshots", subvolName("snaps/s.2"), "from", subvolName("snaps/s.1")+".stream")))
		if _, err := os.Stat(filepath.Join(dir, "snapshots", "src")); err != nil {
			t.Errorf("all_subvolumes: %v", err)
		}
		if m, _, err := mountinfo.Find(dir); err != nil || m.FSType != "fuse.sendfs" ||
			!strings.Contains(m.Options, "allow_other") || !strings.Contains(m.Options, "default_permissions") {
			t.Errorf("mount %+v, %v; want fuse.sendfs with allow_other,default_permissions", m, err)
		}
		if ents, _ := os.ReadDir(cache); len(ents) == 0 {
			t.Errorf("cache_dir %s unused", cache)
		}
		umountHelper(t, dir)
	})

	t.Run("fstab", func(t *testing.T) {
		dir := helperMount(t)
		line := fromReadme(readmeLine(t, "/dev/sdb1  /srv/streams  fuse.sendfs"), fs.Images[0], dir, t.TempDir())
		fstab := filepath.Join(t.TempDir(), "fstab")
		must(t, os.WriteFile(fstab, []byte(line+"\n"), 0o644))
		run(t, "mount", "-a", "-T", fstab)
		sameBytes(t, "incremental stream through the fstab line", want, readFile(t, filepath.Join(dir, "snapshots", subvolName("snaps/s.2"), "from", subvolName("snaps/s.1")+".stream")))
		umountHelper(t, dir)
	})

	t.Run("devices", func(t *testing.T) {
		// SOURCE is DEVICE:DEVICE for a filesystem on two devices.
		fs2 := newFS(t, fsOpts{Devices: 2, Size: 1 << 30, MkfsArgs: []string{"-d", "raid1", "-m", "raid1"}})
		writeFile(t, fs2.path("f"), random(200000, 9))
		snapshotRO(t, fs2, "", "s")
		unmount(t, fs2)
		dir := helperMount(t)
		run(t, "mount", "-t", "fuse.sendfs", strings.Join(fs2.Images, ":"), dir)
		sameBytes(t, "full stream from two devices", sendfsSend(t, fs2.Images, "s", ""), readFile(t, filepath.Join(dir, "snapshots", "s", "full.stream")))
		umountHelper(t, dir)
	})

	t.Run("BadOption", func(t *testing.T) {
		dir := helperMount(t)
		out, err := runErr("mount", "-t", "fuse.sendfs", fs.Images[0], dir, "-o", "ro,cache_dri=/tmp")
		if err == nil || !strings.Contains(out+err.Error(), `unknown mount option "cache_dri"`) {
			t.Errorf("mount with a misspelt option: %v %s", err, out)
		}
		if isMounted(dir) || len(daemonsOf(dir)) > 0 {
			t.Errorf("mounted anyway")
		}
		out, err = runErr("mount", "-t", "fuse.sendfs", fs.Images[0]+".missing", dir)
		if err == nil || !strings.Contains(out+err.Error(), ".missing: no such file or directory") || isMounted(dir) {
			t.Errorf("mount of a missing device: %v %s", err, out)
		}
	})
}

// TestSystemdNotify runs the README's unit's ExecStart with a notification
// socket the test opens, as systemd would for Type=notify: READY=1 comes
// once the tree answers, STOPPING=1 when SIGTERM unmounts it.
func TestSystemdNotify(t *testing.T) {
	requireFUSE(t)
	fs := serviceImage(t)
	if typ := readmeLine(t, "Type=notify"); typ != "Type=notify" {
		t.Fatalf("README unit: %q", typ)
	}
	sockPath := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	must(t, err)
	defer sock.Close()
	dir := filepath.Join(t.TempDir(), "streams")
	must(t, os.Mkdir(dir, 0o755))

	argv := strings.Fields(strings.TrimPrefix(fromReadme(readmeLine(t, "ExecStart=/usr/local/bin/sendfs mount"), fs.Images[0], dir, t.TempDir()), "ExecStart="))
	cmd := exec.Command(sendfsBinary(t), argv[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	must(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if isMounted(dir) {
			runErr("fusermount3", "-u", "-z", dir)
		}
		cmd.Process.Kill()
	}()

	next := func(what string) string {
		t.Helper()
		must(t, sock.SetReadDeadline(time.Now().Add(30*time.Second)))
		buf := make([]byte, 4096)
		n, err := sock.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v\n%s", what, err, stderr)
		}
		return string(buf[:n])
	}
	msg := next("READY=1")
	if !strings.Contains(msg, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", msg)
	}
	// Ready means the tree answers: no waiting here.
	if _, err := os.Stat(filepath.Join(dir, "snapshots", subvolName("snaps/s.1"), "full.stream")); err != nil {
		t.Errorf("stat right after READY=1: %v", err)
	}
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	if msg := next("STOPPING=1"); !strings.Contains(msg, "STOPPING=1") {
		t.Errorf("notification after SIGTERM %q, want STOPPING=1", msg)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("sendfs mount after SIGTERM: %v\n%s", err, stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("sendfs mount still running 30s after SIGTERM")
	}
	if isMounted(dir) {
		t.Errorf("still mounted after SIGTERM")
	}
}
