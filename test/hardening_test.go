package test

// Issue 10: sendfs used as a hostile or careless user would. Each subtest
// is one reproduction of the issue, named by its item.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"sendfs/internal/testimage"
)

// badName is a snapshot name that is not UTF-8.
const badName = "bad\xff\xfe"

// hardeningImage is the filesystem the subtests share: vol with a 2 MiB
// file f (inode 257), snapshots s1 and s2 (s2 adds g, so their leaves
// differ), deep (a path over PATH_MAX), and a snapshot named badName.
type hardeningImage struct {
	fs   *btrfsFS
	img  string
	s2ID uint64
}

func buildHardeningImage(t *testing.T) *hardeningImage {
	fs := newFS(t, fsOpts{Size: 1 << 30})
	subvolCreate(t, fs, "vol")
	writeFile(t, fs.path("vol/f"), random(2<<20, 1))
	snapshotRO(t, fs, "vol", "snaps/s1")
	writeFile(t, fs.path("vol/g"), patterned(5000, 2))
	snapshotRO(t, fs, "vol", "snaps/s2")
	snapshotRO(t, fs, "vol", "snaps/"+badName)

	subvolCreate(t, fs, "deepvol")
	deepPath(t, fs.path("deepvol"), 17)
	snapshotRO(t, fs, "deepvol", "snaps/deep")
	unmount(t, fs)

	h := &hardeningImage{fs: fs, img: fs.Images[0]}
	var subvols []listJSON
	must(t, json.Unmarshal([]byte(sendfsRun(t, "list", "--json", h.img).stdout), &subvols))
	for _, sv := range subvols {
		if sv.Path == "snaps/s2" {
			h.s2ID = sv.ID
		}
	}
	if h.s2ID == 0 {
		t.Fatal("snaps/s2 not listed")
	}
	return h
}

// deepPath nests n directories of 255-byte names under dir, creating each
// relative to the previous one (the whole path is longer than PATH_MAX),
// and puts a file at the bottom.
func deepPath(t *testing.T, dir string, n int) {
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	must(t, err)
	for i := range n {
		name := strings.Repeat(string(rune('a'+i)), 255)
		must(t, unix.Mkdirat(fd, name, 0o755))
		next, err := unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		must(t, err)
		unix.Close(fd)
		fd = next
	}
	f, err := unix.Openat(fd, "bottom", unix.O_CREAT|unix.O_WRONLY, 0o644)
	must(t, err)
	unix.Close(f)
	unix.Close(fd)
}

// copyImage makes a copy of the image that a subtest may damage.
func (h *hardeningImage) copyImage(t *testing.T) string {
	dst := filepath.Join(t.TempDir(), "copy.img")
	run(t, "cp", "--sparse=always", h.img, dst)
	return dst
}

func TestHardening(t *testing.T) {
	h := buildHardeningImage(t)
	t.Run("1 file over device", h.checkFileOverDevice)
	t.Run("2 path over PATH_MAX", h.checkLongPath)
	t.Run("3 invalid file extent", h.checkInvalidExtent)
	t.Run("4 fifo device", h.checkFifoDevice)
	t.Run("5 signal while blocked", h.checkSignalWhileBlocked)
	t.Run("7 write errors", h.checkWriteErrors)
	t.Run("8 top level", h.checkTopLevel)
	t.Run("9 no temporary name", h.checkNoTemporaryName)
	t.Run("10 messages", h.checkMessages)
	t.Run("11 non-UTF-8 names", h.checkNonUTF8)
}

// Item 1: FILE and DEVICE through a loop device, a symlink, a hard link.
func (h *hardeningImage) checkFileOverDevice(t *testing.T) {
	before := sha(t, h.img)
	dir := t.TempDir()
	link := filepath.Join(dir, "hard.img")
	must(t, os.Link(h.img, link))
	sym := filepath.Join(dir, "sym.img")
	must(t, os.Symlink(h.img, sym))
	loop := testimage.Attach(t, []string{h.img}, "", true).Loops[0]
	for _, c := range [][2]string{{h.img, loop}, {loop, h.img}, {sym, h.img}, {link, loop}, {h.img, h.img}} {
		sendfsRun(t, "send", "-f", c[0], c[1], "snaps/s1").wantFailure(t, 1, "refusing to write the stream over "+c[0])
	}
	if sha(t, h.img) != before {
		t.Fatal("the image changed")
	}
}

func sha(t *testing.T, p string) string {
	return strings.Fields(run(t, "sha256sum", p))[0]
}

// Item 2: a path longer than PATH_MAX fails the send as the kernel's does.
func (h *hardeningImage) checkLongPath(t *testing.T) {
	out := filepath.Join(t.TempDir(), "deep.stream")
	r := sendfsRun(t, "send", "-f", out, h.img, "snaps/deep")
	r.wantFailure(t, 1, "file name too long", "longer than PATH_MAX", "inode ", `"aaaa`)
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed send left its -f FILE")
	}
	sendfsRun(t, "send", "--size", h.img, "snaps/deep").wantFailure(t, 1, "file name too long")

	// Through FUSE: EIO on every stat, one log line.
	requireFUSE(t)
	m := startMount(t, []string{h.img})
	for range 3 {
		if _, err := os.Stat(m.streamPath("snaps/deep", "")); !errors.Is(err, syscall.EIO) {
			t.Fatalf("stat of the deep stream: %v, want EIO", err)
		}
	}
	m.waitLog(t, "file name too long", 30*time.Second)
	if n := strings.Count(m.stderr.String(), "file name too long"); n != 1 {
		t.Errorf("the size failure was logged %d times:\n%s", n, m.stderr)
	}
}

// Item 3: a leaf with an invalid file extent item (checksum recomputed) is
// refused by the full and the incremental send alike.
func (h *hardeningImage) checkInvalidExtent(t *testing.T) {
	for _, c := range []struct {
		name string
		off  int // in the file extent item
		val  byte
	}{{"type 46", 20, 46}, {"type 3", 20, 3}, {"compression 255", 16, 255}, {"encryption 1", 17, 1}, {"other_encoding 1", 18, 1}} {
		t.Run(c.name, func(t *testing.T) {
			img := h.copyImage(t)
			if n := patchLeafItem(t, img, h.s2ID, 257, 108, c.off, c.val); n == 0 {
				t.Fatal("no leaf of snaps/s2 holds inode 257's extent")
			}
			sendfsRun(t, "send", "-f", filepath.Join(t.TempDir(), "s"), img, "snaps/s2").wantFailure(t, 1, "corrupt btrfs metadata")
			sendfsRun(t, "send", "-f", filepath.Join(t.TempDir(), "s"), "-p", "snaps/s1", img, "snaps/s2").wantFailure(t, 1, "corrupt btrfs metadata")
		})
	}
}

// patchLeafItem sets byte off of the first item with key (ino, typ, *) in
// every copy of the leaves owned by tree owner, and recomputes their crc32c
// checksums. It returns how many blocks it changed.
func patchLeafItem(t *testing.T, img string, owner, ino uint64, typ uint8, off int, val byte) int {
	const nodeSize, header, itemSize = 16384, 101, 25
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	st, err := f.Stat()
	must(t, err)
	var fsid [16]byte
	sb := make([]byte, 4096)
	_, err = f.ReadAt(sb, 65536)
	must(t, err)
	copy(fsid[:], sb[32:48])
	le := binary.LittleEndian
	b := make([]byte, nodeSize)
	patched := 0
	for pos := int64(0); pos+nodeSize <= st.Size(); pos += 4096 {
		if _, err := f.ReadAt(b, pos); err != nil {
			break
		}
		if !bytes.Equal(b[32:48], fsid[:]) || le.Uint64(b[48:]) == 0 || b[100] != 0 || le.Uint64(b[88:]) != owner {
			continue
		}
		if !bytes.Equal(b[:4], crcSum(b[32:])) {
			continue
		}
		for i := range int(le.Uint32(b[96:])) {
			h := b[header+i*itemSize:]
			if le.Uint64(h) != ino || h[8] != typ {
				continue
			}
			b[header+int(le.Uint32(h[17:]))+off] = val
			copy(b, crcSum(b[32:]))
			_, err := f.WriteAt(b, pos)
			must(t, err)
			patched++
			break
		}
	}
	must(t, f.Sync())
	return patched
}

func crcSum(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(nil, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// Item 4: a fifo as DEVICE is refused at once, not opened.
func (h *hardeningImage) checkFifoDevice(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	must(t, syscall.Mkfifo(fifo, 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, sendfsBinary(t), "list", fifo).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatal("sendfs list FIFO hangs")
	}
	if err == nil || !strings.Contains(string(out), fifo+" is a fifo, not a block device or image file") {
		t.Errorf("list FIFO: %v: %s", err, out)
	}
}

// Item 5: the first SIGTERM or SIGINT ends a send blocked on a full pipe,
// or on a fifo nobody opens, with the message and exit status 1.
func (h *hardeningImage) checkSignalWhileBlocked(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	must(t, syscall.Mkfifo(fifo, 0o600))
	for _, c := range []struct {
		name string
		sig  syscall.Signal
		args []string
		want string
	}{
		{"pipe SIGTERM", syscall.SIGTERM, []string{"send", h.img, "snaps/s1"}, "written to stdout are an incomplete stream"},
		{"pipe SIGINT", syscall.SIGINT, []string{"send", h.img, "snaps/s1"}, "written to stdout are an incomplete stream"},
		{"fifo SIGTERM", syscall.SIGTERM, []string{"send", "-f", fifo, h.img, "snaps/s1"}, "cannot open " + fifo},
	} {
		t.Run(c.name, func(t *testing.T) {
			pr, pw, err := os.Pipe()
			must(t, err)
			defer pr.Close()
			var stderr syncBuffer
			cmd := exec.Command(sendfsBinary(t), c.args...)
			cmd.Stdout, cmd.Stderr = pw, &stderr
			must(t, cmd.Start())
			pw.Close()
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			// The stream (over 2 MiB) fills the 64 KiB pipe that nobody
			// reads, or the fifo open waits for a reader.
			time.Sleep(time.Second)
			must(t, cmd.Process.Signal(c.sig))
			select {
			case err := <-exited:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 1 {
					t.Errorf("exit: %v, want status 1", err)
				}
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-exited
				t.Fatalf("the first %v did not end the send", c.sig)
			}
			if !strings.Contains(stderr.String(), "send interrupted") || !strings.Contains(stderr.String(), c.want) {
				t.Errorf("stderr: %q", stderr.String())
			}
		})
	}
}

// Item 7: write errors on stdout are errors, and a closed stdout is not a
// place to send to.
func (h *hardeningImage) checkWriteErrors(t *testing.T) {
	for _, c := range []struct{ script, want string }{
		{`exec "$0" send --size "$1" snaps/s1 > /dev/full`, "cannot write the size to stdout: no space left on device"},
		{`exec "$0" send "$1" snaps/s1 > /dev/full`, "incomplete stream"},
		{`exec "$0" send "$1" snaps/s1 >&-`, "stdout is closed"},
		{`exec "$0" send --size "$1" snaps/s1 >&-`, "stdout is closed"},
	} {
		out, err := exec.Command("sh", "-c", c.script, sendfsBinary(t), h.img).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: %v: %s; want status 1 and %q", c.script, err, out, c.want)
		}
	}
}

// Item 8: the top level is refused before anything is written.
func (h *hardeningImage) checkTopLevel(t *testing.T) {
	for _, spec := range []string{"5", "/", ""} {
		for _, flags := range [][]string{nil, {"--allow-writable"}} {
			r := sendfsRun(t, append(append([]string{"send"}, flags...), h.img, spec)...)
			r.wantFailure(t, 1, "the top level (id 5) cannot be sent")
			if r.stdout != "" {
				t.Errorf("send %q %v wrote %d bytes", spec, flags, len(r.stdout))
			}
		}
	}
	sendfsRun(t, "send", "-p", "5", h.img, "snaps/s1").wantFailure(t, 1, "the top level (id 5) cannot be a parent")
}

// Item 9: while -f writes, FILE's directory shows no temporary name, so a
// SIGKILL leaves nothing behind.
func (h *hardeningImage) checkNoTemporaryName(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "s1.stream")
	cmd := exec.Command(sendfsBinary(t), "send", "-q", "-f", out, h.img, "snaps/s1")
	must(t, cmd.Start())
	seen := map[string]bool{}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for done := false; !done; {
		select {
		case err := <-exited:
			must(t, err)
			done = true
		default:
		}
		ents, err := os.ReadDir(dir)
		must(t, err)
		for _, e := range ents {
			seen[e.Name()] = true
		}
	}
	delete(seen, "s1.stream")
	if len(seen) != 0 {
		t.Errorf("temporary names appeared in FILE's directory: %v", seen)
	}
	// Killed midway: nothing is left.
	must(t, os.Remove(out))
	cmd = exec.Command(sendfsBinary(t), "send", "-q", "-f", out, h.img, "snaps/s1")
	must(t, cmd.Start())
	time.Sleep(20 * time.Millisecond)
	cmd.Process.Kill()
	cmd.Wait()
	if ents, _ := os.ReadDir(dir); len(ents) > 1 || len(ents) == 1 && ents[0].Name() != "s1.stream" {
		t.Errorf("SIGKILL left %v", ents)
	}
}

// Item 10: messages that used to mislead.
func (h *hardeningImage) checkMessages(t *testing.T) {
	dir := t.TempDir()
	sendfsRun(t, "list", dir).wantFailure(t, 1, dir+" is a directory, not a block device or image file")
	sendfsRun(t, "send", "-f", "/proc/version", h.img, "snaps/s1").wantFailure(t, 1, "cannot create /proc/version: its directory /proc does not accept new files")
	r := sendfsRun(t, "mount", h.img, dir, filepath.Join(dir, "extra"))
	if r.code != 2 || !strings.Contains(r.stderr, "DEVICE "+dir+" is a directory; MOUNTPOINT must be the last argument") {
		t.Errorf("mount IMG MNT extra: exit %d: %s", r.code, r.stderr)
	}

	img := h.copyImage(t)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("garbage"), 65536+512)
	must(t, err)
	must(t, f.Close())
	r = sendfsRun(t, "list", img)
	if r.code != 0 || !strings.Contains(r.stderr, "sendfs: warning: "+img+": the primary superblock at 64 KiB is bad") || !strings.Contains(r.stdout, "snaps/s1") {
		t.Errorf("list with a bad primary superblock: exit %d, stderr %q", r.code, r.stderr)
	}
}

// Item 11: every form list prints is accepted by send, and the JSON holds
// the exact bytes.
func (h *hardeningImage) checkNonUTF8(t *testing.T) {
	want := sendfsSend(t, []string{h.img}, "snaps/"+badName, "")
	quoted := fmt.Sprintf("%q", "snaps/"+badName)
	if !strings.Contains(sendfsRun(t, "list", h.img).stdout, quoted) {
		t.Fatalf("list does not print %s", quoted)
	}
	if got := sendfsSend(t, []string{h.img}, quoted, ""); !bytes.Equal(got, want) {
		t.Errorf("send %s differs from send of the raw name", quoted)
	}
	var subvols []struct {
		Path        string `json:"path"`
		PathEscaped string `json:"path_escaped"`
	}
	must(t, json.Unmarshal([]byte(sendfsRun(t, "list", "--json", h.img).stdout), &subvols))
	found := false
	for _, sv := range subvols {
		if sv.PathEscaped == quoted {
			found = true
			if got := sendfsSend(t, []string{h.img}, sv.PathEscaped, ""); !bytes.Equal(got, want) {
				t.Errorf("send of path_escaped %s differs", sv.PathEscaped)
			}
		}
	}
	if !found {
		t.Errorf("no path_escaped %s in list --json", quoted)
	}
}
