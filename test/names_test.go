package test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFUSENames: every name the mount shows is at most 255 bytes, also for
// a 250-byte snapshot name and a nested path of 700 bytes; cp -r, rsync -a
// and tar copy the whole tree; the names are those `sendfs list --json`
// prints, the same on the next mount, and each full path stays reachable
// (by-id) as does the escaped name of earlier versions.
func TestFUSENames(t *testing.T) {
	requireFUSE(t)
	fsys := newFS(t, fsOpts{})
	src := subvolCreate(t, fsys, "src")
	writeFile(t, filepath.Join(src, "f"), []byte("one\n"))
	long := strings.Repeat("l", 250)
	deep := strings.Repeat("d", 200) + "/" + strings.Repeat("e", 200) + "/" + strings.Repeat("s", 150)
	nested := strings.Repeat("n", 250) + "/" + strings.Repeat("m", 250)
	mustMkdirAll(t, fsys.path(filepath.Dir(deep)))
	mustMkdirAll(t, fsys.path(filepath.Dir(nested)))
	snaps := []string{long, deep, nested, "snaps/home.2026-11-01", "snaps/50%", "@/.snapshots/12/snapshot"}
	mustMkdirAll(t, fsys.path("snaps"))
	mustMkdirAll(t, fsys.path("@/.snapshots/12"))
	for i, s := range snaps {
		writeFile(t, filepath.Join(src, "f"), []byte(strconv.Itoa(i)))
		snapshotRO(t, fsys, "src", s)
	}
	remountRO(t, fsys)

	// The names `sendfs list --json` prints.
	r := sendfsRun(t, append([]string{"list", "--json"}, fsys.Images...)...)
	var listed []struct {
		ID        uint64 `json:"id"`
		Path      string `json:"path"`
		MountName string `json:"mount_name"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || r.code != 0 {
		t.Fatalf("sendfs list --json: %v, exit %d: %s", err, r.code, r.stderr)
	}
	names := map[string]string{} // path -> mount name
	for _, l := range listed {
		names[l.Path] = l.MountName
	}
	for _, want := range []struct{ path, name string }{
		{"snaps/home.2026-11-01", "home.2026-11-01 ‹ snaps"},
		{"@/.snapshots/12/snapshot", "snapshot ‹ 12 ‹ .snapshots ‹ @"},
		{"snaps/50%", "snaps%2F50%25"},
	} {
		if names[want.path] != want.name {
			t.Errorf("mount_name of %s = %q, want %q", want.path, names[want.path], want.name)
		}
	}

	tree := func(m *sendfsMount) []string {
		var all []string
		err := filepath.WalkDir(m.dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if len(d.Name()) > 255 {
				t.Errorf("name of %d bytes: %s", len(d.Name()), p)
			}
			all = append(all, p[len(m.dir):])
			return nil
		})
		must(t, err)
		return all
	}
	m := startMount(t, fsys.Images, "--cache-dir", "")
	first := tree(m)
	for _, l := range listed {
		if l.Path == "src" {
			continue
		}
		dir := m.path("snapshots", l.MountName)
		if target, err := os.Readlink(m.path("by-id", strconv.FormatUint(l.ID, 10))); err != nil || target != "../snapshots/"+l.MountName {
			t.Errorf("by-id/%d -> %q, %v; want ../snapshots/%s", l.ID, target, err, l.MountName)
		}
		sameBytes(t, "full stream of "+l.Path, sendfsSend(t, fsys.Images, l.Path, ""), readFile(t, filepath.Join(dir, "full.stream")))
		if len(legacyName(l.Path)) <= 255 {
			if _, err := os.Stat(m.path("snapshots", legacyName(l.Path), "full.stream")); err != nil {
				t.Errorf("escaped name of earlier versions: %v", err)
			}
		}
	}
	// Incremental names of long parents fit too, and read the right pair.
	inc := m.path("snapshots", names["snaps/home.2026-11-01"], "from", names[nested]+".stream")
	sameBytes(t, "home from nested", sendfsSend(t, fsys.Images, "snaps/home.2026-11-01", nested), readFile(t, inc))

	// The tools that failed on names over 255 bytes copy the whole tree.
	out := t.TempDir()
	run(t, "cp", "-r", m.path("snapshots"), filepath.Join(out, "cp"))
	run(t, "rsync", "-a", m.path("snapshots")+"/", filepath.Join(out, "rsync"))
	run(t, "tar", "-C", m.dir, "-cf", filepath.Join(out, "x.tar"), "snapshots")
	for _, copied := range []string{"cp", "rsync"} {
		if _, err := os.Stat(filepath.Join(out, copied, names[long], "from", names[deep]+".stream")); err != nil {
			t.Errorf("%s copy: %v", copied, err)
		}
	}

	// The same names on the next mount.
	run(t, "fusermount3", "-u", m.dir)
	must(t, m.waitExit(t, 30*time.Second))
	if second := tree(startMount(t, fsys.Images, "--cache-dir", "")); !slices.Equal(first, second) {
		t.Errorf("names changed across mounts:\n%q\n%q", first, second)
	}
}
