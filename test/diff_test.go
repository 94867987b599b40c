package test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
				got := canonical(t, sendfsDiff(t, c.fs.Images, from, to), c.fs.path(to), want)
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
// new or removed inode, and the names that came or went of a hard-linked
// one), renamed (an inode whose one name changed directory or name),
// modified (content, or the data rewritten: different extents) and
// metadata (mode, owner, xattrs, and a non-directory's mtime). The change
// of a hard-linked inode is written with its identity, not a path: sendfs
// names it by whichever of its names the stream used.
func diffTruth(t *testing.T, a, b string) []string {
	ta, err := captureTree(a)
	must(t, err)
	tb, err := captureTree(b)
	must(t, err)
	ia, ib := identities(t, a), identities(t, b)
	// A name is its directory's identity and its base name.
	type name struct {
		dir  identity
		base string
	}
	names := func(ids map[string]identity) map[identity]map[name]string {
		out := map[identity]map[name]string{}
		for p, id := range ids {
			if out[id] == nil {
				out[id] = map[name]string{}
			}
			out[id][name{ids[filepath.Dir(p)], filepath.Base(p)}] = p
		}
		return out
	}
	na, nb := names(ia), names(ib)
	var out []string
	for id, news := range nb {
		olds := na[id]
		if len(olds) == 1 && len(news) == 1 && ta[firstPath(olds)].Nlink == 1 && tb[firstPath(news)].Nlink == 1 {
			old, p := firstPath(olds), firstPath(news)
			if _, same := olds[firstName(news)]; !same {
				out = append(out, "renamed "+old+" -> "+p)
			}
			out = append(out, contentChange(t, ta[old], tb[p], filepath.Join(a, old), filepath.Join(b, p), p)...)
			continue
		}
		for n, p := range news {
			if _, ok := olds[n]; !ok {
				out = append(out, "added "+p)
			}
		}
		for n, p := range olds {
			if _, ok := news[n]; !ok {
				out = append(out, "deleted "+p)
			}
		}
		if len(olds) > 0 {
			old, p := firstPath(olds), firstPath(news)
			label := p
			if tb[p].Nlink > 1 {
				label = fmt.Sprint(id)
			}
			out = append(out, contentChange(t, ta[old], tb[p], filepath.Join(a, old), filepath.Join(b, p), label)...)
		}
	}
	for id, olds := range na {
		if nb[id] == nil {
			for _, p := range olds {
				out = append(out, "deleted "+p)
			}
		}
	}
	slices.Sort(out)
	return out
}

// firstPath and firstName pick the first of a set of names, by path.
func firstPath[K comparable](m map[K]string) string {
	return m[firstName(m)]
}

func firstName[K comparable](m map[K]string) K {
	var first K
	best := ""
	for k, p := range m {
		if best == "" || p < best {
			first, best = k, p
		}
	}
	return first
}

// contentChange is "modified" or "metadata" for label when an inode's
// content or metadata differ between its paths pa and pb, or "changed"
// when the mtime changed but not the content of an inline file, whose
// rewrite no extent address shows.
func contentChange(t *testing.T, ea, eb *entry, pa, pb, label string) []string {
	var xa, xb string
	if ea.Type == "file" && ea.Mtime != eb.Mtime {
		xa, xb = extents(t, pa, ea.Size), extents(t, pb, eb.Size)
	}
	switch {
	case ea.Digest != eb.Digest || ea.Target != eb.Target || ea.Size != eb.Size || xa != xb:
		return []string{"modified " + label}
	case strings.Contains(xa, "inline"):
		return []string{"changed " + label}
	case ea.Mode != eb.Mode || ea.UID != eb.UID || ea.GID != eb.GID ||
		!slices.Equal(ea.Xattrs, eb.Xattrs) || ea.Type != "dir" && ea.Mtime != eb.Mtime:
		return []string{"metadata " + label}
	}
	return nil
}

// extents is a file's extent map up to its size (filefrag, 4 KiB blocks):
// two snapshots of a file whose data was not rewritten share their
// extents (read only when the mtime changed: a write sets it). Preallocation beyond the size is left out (protocol 1 streams do
// not carry it).
func extents(t *testing.T, p string, size int64) string {
	out := run(t, "filefrag", "-v", "-b4096", "-e", p)
	var rows []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		if start, err := strconv.ParseInt(strings.TrimSuffix(f[1], ".."), 10, 64); err != nil || start*4096 >= size {
			continue
		}
		row := strings.Join(f[1:6], " ") // offsets and length, not the flags
		if strings.Contains(line, "inline") {
			row += " inline"
		}
		rows = append(rows, row)
	}
	return strings.Join(rows, "\n")
}

// canonical rewrites sendfs's "modified PATH"/"metadata PATH" of a
// hard-linked inode with the inode's identity, as diffTruth writes it, and
// either as "changed PATH" where the truth cannot tell them apart.
func canonical(t *testing.T, lines []string, root string, truth []string) []string {
	ids := identities(t, root)
	for i, l := range lines {
		kind, p, _ := strings.Cut(l, " ")
		if kind != "modified" && kind != "metadata" {
			continue
		}
		label := p
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(root, p), &st))
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			label = fmt.Sprint(ids[p])
		}
		if slices.Contains(truth, "changed "+label) {
			kind = "changed"
		}
		lines[i] = kind + " " + label
	}
	slices.Sort(lines)
	return lines
}

// TestDiffCLI: the text form names each kind, with human sizes, and the
// mount's from/<parent>.diff says the same.
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

	// The mount answers from/<parent>.diff with the same text.
	requireFUSE(t)
	m := startMount(t, fsys.Images, "--cache-dir", "")
	from := filepath.Dir(m.streamPath("s2", "s1"))
	if got := string(readFile(t, filepath.Join(from, "s1.diff"))); got != r.stdout {
		t.Errorf("from/s1.diff:\n%s\nwant what sendfs diff prints:\n%s", got, r.stdout)
	}
	if ents, err := os.ReadDir(from); err != nil || len(ents) != 1 {
		t.Errorf("from/ lists %v, %v; want the stream only", ents, err)
	}
}
