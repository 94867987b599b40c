package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sendfs/internal/testenv"
)

// gioBudget bounds how long GIO may take to list a from/ of 100 streams
// with their types and sizes on a fresh mount: generous (the machine is
// shared), it catches a stall, not a slowdown.
const gioBudget = 60 * time.Second

// TestGIO browses the mount as a file manager does, through GIO, with the
// shared-mime-info definition `make install` installs: a from/ of 100
// streams lists with exact sizes and the type application/x-btrfs-send-stream
// within the budget, gio info agrees, and gio copy copies a stream whole.
func TestGIO(t *testing.T) {
	requireFUSE(t)
	for _, tool := range []string{"gio", "update-mime-database"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, tool+" not installed (make deps)")
		}
	}
	// The mime definition, installed for this test only.
	share := t.TempDir()
	xml, err := os.ReadFile("../data/sendfs-mime.xml")
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(share, "mime", "packages"), 0o755))
	must(t, os.WriteFile(filepath.Join(share, "mime", "packages", "sendfs.xml"), xml, 0o644))
	run(t, "update-mime-database", filepath.Join(share, "mime"))
	gio := func(args ...string) (string, error) {
		cmd := exec.Command("gio", args...)
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+share)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// 101 snapshots of one subvolume: each from/ lists the 100 others.
	fs := newFS(t, fsOpts{Size: 1 << 30})
	src := subvolCreate(t, fs, "src")
	mustMkdir(t, fs.path("snaps"))
	for i := range 101 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%03d", i)), random(3000+i, uint64(i)))
		snapshotRO(t, fs, "src", fmt.Sprintf("snaps/s.%03d", i))
	}
	unmount(t, fs)
	m := startMount(t, fs.Images, "--cache-dir", "")
	from := filepath.Dir(m.streamPath("snaps/s.100", "snaps/s.000"))

	start := time.Now()
	out, err := gio("list", "-a", "standard::content-type,standard::size", from)
	took := time.Since(start)
	t.Logf("gio list of 100 streams with types and sizes on a fresh mount: %v", took)
	if err != nil {
		t.Fatalf("gio list: %v\n%s", err, out)
	}
	if took > gioBudget {
		t.Errorf("gio list took %v, over the %v budget", took, gioBudget)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 100 {
		t.Fatalf("gio list: %d entries, want 100\n%s", len(lines), out)
	}
	for _, line := range lines {
		// NAME \t SIZE \t (regular) \t standard::content-type=TYPE
		f := strings.Split(line, "\t")
		if len(f) < 4 || f[3] != "standard::content-type=application/x-btrfs-send-stream" {
			t.Errorf("gio list line %q: want type application/x-btrfs-send-stream", line)
			continue
		}
		var st os.FileInfo
		if st, err = os.Stat(filepath.Join(from, f[0])); err != nil || strconv.FormatInt(st.Size(), 10) != f[1] {
			t.Errorf("gio list %s: size %s, stat %v %v", f[0], f[1], st, err)
		}
	}

	stream := m.streamPath("snaps/s.100", "snaps/s.050")
	info, err := gio("info", "-a", "standard::content-type,standard::size", stream)
	want := sendfsSend(t, fs.Images, "snaps/s.100", "snaps/s.050")
	if err != nil || !strings.Contains(info, "standard::content-type: application/x-btrfs-send-stream") ||
		!strings.Contains(info, fmt.Sprintf("standard::size: %d", len(want))) {
		t.Errorf("gio info: %v\n%s", err, info)
	}
	dst := filepath.Join(t.TempDir(), "copy.stream")
	if out, err := gio("copy", stream, dst); err != nil {
		t.Fatalf("gio copy: %v\n%s", err, out)
	}
	sameBytes(t, "gio copy", want, readFile(t, dst))
}
