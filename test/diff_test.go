package test

import (
	"encoding/json"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// checkDiffs runs `sendfs diff --json` on every snapshot pair of the
// incremental corpus (parent i, child i+1) and compares the changes with
// the truth read from the two snapshots the kernel mounts: the same set of
// changed paths, each with the same kind.
func checkDiffs(t *testing.T, c *corpus, scenarios []scenario) {
	for _, sc := range scenarios {
		if c.broken[sc.name] {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			for i := range sc.changes {
				from, to := snapName(sc, i), snapName(sc, i+1)
				want := diffTruth(t, c.fs.path(from), c.fs.path(to))
				got := sendfsDiff(t, c.fs.Images, from, to)
				if !slices.Equal(got, want) {
					t.Errorf("diff %s -> %s:\n  sendfs: %q\n  truth:  %q", from, to, got, want)
				}
			}
		})
	}
}

// diffChange is one element of `sendfs diff --json`, as documented.
type diffChange struct {
	Kind string   `json:"kind"`
	Path string   `json:"path"`
	From string   `json:"from"`
	Type string   `json:"type"`
	Size *uint64  `json:"size"`
	Data bool     `json:"data"`
	Meta []string `json:"metadata"`
}

// sendfsDiff returns the changes sendfs reports, in canonical lines.
func sendfsDiff(t *testing.T, images []string, from, to string) []string {
	t.Helper()
	r := sendfsRun(t, append(append([]string{"diff", "--json", "-p", from}, images...), to)...)
	var changes []diffChange
	if err := json.Unmarshal([]byte(r.stdout), &changes); err != nil || r.code != 0 {
		t.Fatalf("sendfs diff -p %s %s: %v, exit %d: %s", from, to, err, r.code, r.stderr)
	}
	var out []string
	for _, c := range changes {
		switch c.Kind {
		case "renamed":
			out = append(out, "renamed "+c.From+" -> "+c.Path)
			if c.Data {
				out = append(out, "modified "+c.Path)
			} else if len(c.Meta) > 0 {
				out = append(out, "metadata "+c.Path)
			}
		default:
			out = append(out, c.Kind+" "+c.Path)
		}
	}
	slices.Sort(out)
	return out
}

// identity tells inodes apart across two snapshots: the inode number and
// the creation time (a reused number comes with a new birth time).
type identity struct {
	ino   uint64
	btime unix.StatxTimestamp
}

// identities maps each path of the tree at root ("." for the root) to its
// inode's identity, leaving out nested subvolumes as captureTree does.
func identities(t *testing.T, root string) map[string]identity {
	out := map[string]identity{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_INO|unix.STATX_BTIME, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel != "." && d.IsDir() && (st.Ino == 2 || st.Ino == 256) {
			return filepath.SkipDir // a nested subvolume or its stub
		}
		out[rel] = identity{st.Ino, st.Btime}
		return nil
	})
	must(t, err)
	return out
}

// diffTruth is what changed from the tree at a to the tree at b, in the
// canonical lines of sendfsDiff: added and deleted paths (every name of a
// new or removed inode, and new or removed hard links), renamed (an inode
// whose only name changed directory or name), modified (a file's content
// or a symlink's target) and metadata (mode, owner, xattrs, and a
// non-directory's mtime).
func diffTruth(t *testing.T, a, b string) []string {
	ta, err := captureTree(a)
	must(t, err)
	tb, err := captureTree(b)
	must(t, err)
	ia, ib := identities(t, a), identities(t, b)
	names := func(ids map[string]identity) map[identity][]string {
		out := map[identity][]string{}
		for p, id := range ids {
			out[id] = append(out[id], p)
		}
		return out
	}
	na, nb := names(ia), names(ib)
	var out []string
	changed := func(p, q string) {
		ea, eb := ta[p], tb[q]
		switch {
		case ea.Digest != eb.Digest || ea.Target != eb.Target || ea.Size != eb.Size:
			out = append(out, "modified "+q)
		case ea.Mode != eb.Mode || ea.UID != eb.UID || ea.GID != eb.GID ||
			!slices.Equal(ea.Xattrs, eb.Xattrs) || ea.Type != "dir" && ea.Mtime != eb.Mtime:
			out = append(out, "metadata "+q)
		}
	}
	for p, id := range ib {
		olds := na[id]
		switch {
		case len(olds) == 0:
			out = append(out, "added "+p)
		case len(olds) == 1 && len(nb[id]) == 1:
			old := olds[0]
			if old != p && (ia[filepath.Dir(old)] != ib[filepath.Dir(p)] || filepath.Base(old) != filepath.Base(p)) {
				out = append(out, "renamed "+old+" -> "+p)
			}
			changed(old, p)
		case !slices.Contains(olds, p):
			out = append(out, "added "+p) // a new hard link
		default:
			changed(p, p)
		}
	}
	for p, id := range ia {
		if news := nb[id]; len(news) == 0 || !(len(news) == 1 && len(na[id]) == 1) && !slices.Contains(news, p) {
			out = append(out, "deleted "+p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestDiffCLI: the text form names each kind, with human sizes.
func TestDiffCLI(t *testing.T) {
	requireRoot(t)
	fsys := newFS(t, fsOpts{Size: 1 << 30})
	src := subvolCreate(t, fsys, "src")
	writeFile(t, filepath.Join(src, "keep"), random(5000, 1))
	writeFile(t, filepath.Join(src, "grow"), random(1000, 2))
	writeFile(t, filepath.Join(src, "old"), nil)
	mustMkdir(t, filepath.Join(src, "photos"))
	writeFile(t, filepath.Join(src, "photos", "p1"), random(3000, 3))
	snapshotRO(t, fsys, "src", "s1")
	writeFile(t, filepath.Join(src, "grow"), random(3<<20, 4))
	mustRemove(t, filepath.Join(src, "old"))
	mustRename(t, filepath.Join(src, "photos"), filepath.Join(src, "pictures"))
	writeFile(t, filepath.Join(src, "new"), random(2048, 5))
	must(t, unix.Chmod(filepath.Join(src, "keep"), 0o600))
	snapshotRO(t, fsys, "src", "s2")
	unmount(t, fsys)

	r := sendfsRun(t, append(append([]string{"diff", "-p", "s1"}, fsys.Images...), "s2")...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := []string{
		"modified file 1000 B -> 3.0 MiB grow",
		"metadata file mode keep",
		"added file 2.0 KiB new",
		"deleted file 0 B old",
		"renamed dir photos -> pictures",
	}
	var got []string
	for _, l := range lines {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	if r.code != 0 || !slices.Equal(got, want) {
		t.Errorf("sendfs diff: exit %d %s\n%s\nwant\n%s", r.code, r.stderr, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r := sendfsRun(t, append([]string{"diff", "-p", "nope"}, append(fsys.Images, "s2")...)...); r.code != 1 || !strings.Contains(r.stderr, `no parent subvolume "nope"`) {
		t.Errorf("diff with an unknown parent: exit %d %s", r.code, r.stderr)
	}
}
