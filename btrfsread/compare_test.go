package btrfsread

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestCompareTrees checks CompareTrees against a brute-force diff of two
// full walks, on snapshots the kernel made before and after changes, and
// that it reads only blocks the two trees do not share.
func TestCompareTrees(t *testing.T) {
	requireTools(t, true, "btrfs")
	img := newTestImage(t, 300, "-n", "4k")
	mnt := mountImage(t, img, "")
	sv := filepath.Join(mnt, "sv")
	run(t, "btrfs", "subvolume", "create", sv)
	snap := func(name string) uint64 {
		p := filepath.Join(mnt, name)
		run(t, "btrfs", "subvolume", "snapshot", "-r", sv, p)
		id, err := strconv.ParseUint(strings.TrimSpace(run(t, "btrfs", "inspect-internal", "rootid", p)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	empty := snap("empty")
	writeManyFiles(t, sv, 1000)
	full := snap("full")
	for i := 0; i < 1000; i += 37 { // scattered changes leave most leaves shared
		f := filepath.Join(sv, manyFileName(i))
		switch i % 3 {
		case 0:
			must(t, os.Remove(f))
		case 1:
			must(t, os.WriteFile(f, []byte("changed"), 0o644))
		default:
			must(t, os.WriteFile(f+".new", []byte("new"), 0o644))
		}
	}
	changed := snap("changed")
	unmount(t, mnt)

	for _, c := range []struct {
		name        string
		left, right uint64
	}{
		{"changed-vs-full", changed, full},
		{"full-vs-changed", full, changed},
		{"full-vs-empty", full, empty}, // different heights
		{"empty-vs-full", empty, full},
		{"full-vs-full", full, full},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs, err := Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer fs.Close()
			left, right := fsTreeForTest(t, fs, c.left), fsTreeForTest(t, fs, c.right)
			want := bruteDiff(t, left, right)
			lBlocks, rBlocks := treeBlocks(t, left), treeBlocks(t, right)

			fs.blocks = newNodeCache(nodeCacheBytes) // count reads from a cold cache
			before := fs.diskBlockReads.Load()
			var got []string
			var last Key
			err = CompareTrees(left, right, func(ch Change) error {
				if len(got) > 0 && ch.Key.Compare(last) <= 0 {
					t.Errorf("key %v after %v: not in key order", ch.Key, last)
				}
				last = ch.Key
				if ch.Kind != Same {
					got = append(got, fmt.Sprintf("%d %v", ch.Kind, ch.Key))
				} else if !bytes.Equal(ch.Left, ch.Right) {
					t.Errorf("Same %v with different bytes", ch.Key)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("CompareTrees: %d changes, brute force: %d\ngot:  %.500s\nwant: %.500s", len(got), len(want), got, want)
			}
			// A fresh cache big enough for both trees now holds exactly the
			// blocks the comparison read. Every block only one tree has must
			// be read; of the shared ones only the roots and the few reached
			// while the two sides' keys are misaligned (as in the kernel).
			read := int(fs.diskBlockReads.Load() - before)
			shared, sharedRead := 0, 0
			for b := range lBlocks {
				if !rBlocks[b] {
					continue
				}
				shared++
				if fs.blocks.Contains(b) {
					sharedRead++
				}
			}
			for _, blocks := range []map[uint64]bool{lBlocks, rBlocks} {
				for b := range blocks {
					if !fs.blocks.Contains(b) && !(lBlocks[b] && rBlocks[b]) {
						t.Errorf("unshared block 0x%x was not compared", b)
					}
				}
			}
			if read != fs.blocks.Len() || sharedRead > 1+shared/10 {
				t.Errorf("read %d blocks, %d of the %d shared ones", read, sharedRead, shared)
			}
			t.Logf("%d changes; read %d blocks of %d+%d, %d of %d shared", len(got), read, len(lBlocks), len(rBlocks), sharedRead, shared)
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// bruteDiff lists the differences of two trees from two full walks.
func bruteDiff(t testing.TB, left, right Tree) []string {
	items := func(tr Tree) map[Key][]byte {
		m := map[Key][]byte{}
		must(t, tr.Walk(Key{}, MaxKey, func(it Item) error { m[it.Key] = it.Data; return nil }))
		return m
	}
	l, r := items(left), items(right)
	type change struct {
		k    Key
		kind ChangeKind
	}
	var all []change
	for k, v := range l {
		if rv, ok := r[k]; !ok {
			all = append(all, change{k, Added})
		} else if !bytes.Equal(v, rv) {
			all = append(all, change{k, Changed})
		}
	}
	for k := range r {
		if _, ok := l[k]; !ok {
			all = append(all, change{k, Deleted})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].k.Compare(all[j].k) < 0 })
	var out []string
	for _, c := range all {
		out = append(out, fmt.Sprintf("%d %v", c.kind, c.k))
	}
	return out
}

// treeBlocks returns the logical address of every block of a tree.
func treeBlocks(t testing.TB, tr Tree) map[uint64]bool {
	t.Helper()
	blocks := map[uint64]bool{}
	var visit func(n *node)
	visit = func(n *node) {
		blocks[n.logical] = true
		if n.level == 0 {
			return
		}
		for i := range n.nritems {
			c, err := tr.fs.child(n, i)
			must(t, err)
			visit(c)
		}
	}
	root, err := tr.root()
	must(t, err)
	visit(root)
	return blocks
}
