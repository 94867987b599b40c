package btrfsread

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The oracle for tree reads: btrfs inspect-internal dump-tree of the same
// image, compared item by item (key, itemoff, itemsize).

var dumpItemRE = regexp.MustCompile(`(?m)^\s+item \d+ key \((\S+) (\S+) (\S+)\) itemoff (\d+) itemsize (\d+)$`)

// progsObjectIDs and progsTypes are the names dump-tree prints.
var progsObjectIDs = map[string]uint64{
	"ROOT_TREE": 1, "DEV_ITEMS": 1, "EXTENT_TREE": 2, "CHUNK_TREE": 3, "DEV_TREE": 4,
	"FS_TREE": 5, "ROOT_TREE_DIR": 6, "CSUM_TREE": 7, "QUOTA_TREE": 8, "UUID_TREE": 9,
	"FREE_SPACE_TREE": 10, "BLOCK_GROUP_TREE": 11, "FIRST_CHUNK_TREE": 256,
	"DATA_RELOC_TREE": ^uint64(0) - 8, "ORPHAN": ^uint64(0) - 4, "TREE_RELOC": ^uint64(0) - 7,
	"EXTENT_CSUM": ^uint64(0) - 9, "FREE_SPACE": ^uint64(0) - 10,
}

var progsTypes = map[string]uint8{
	"INODE_ITEM": 1, "INODE_REF": 12, "INODE_EXTREF": 13, "XATTR_ITEM": 24, "ORPHAN_ITEM": 48,
	"DIR_ITEM": 84, "DIR_INDEX": 96, "EXTENT_DATA": 108, "EXTENT_CSUM": 128, "ROOT_ITEM": 132,
	"ROOT_BACKREF": 144, "ROOT_REF": 156, "EXTENT_ITEM": 168, "METADATA_ITEM": 169,
	"TREE_BLOCK_REF": 176, "EXTENT_DATA_REF": 178, "SHARED_BLOCK_REF": 182, "SHARED_DATA_REF": 184,
	"BLOCK_GROUP_ITEM": 192, "FREE_SPACE_INFO": 198, "FREE_SPACE_EXTENT": 199, "FREE_SPACE_BITMAP": 200,
	"DEV_EXTENT": 204, "DEV_ITEM": 216, "CHUNK_ITEM": 228, "QGROUP_STATUS": 240, "QGROUP_INFO": 242,
	"QGROUP_LIMIT": 244, "QGROUP_RELATION": 246, "TEMPORARY_ITEM": 248, "PERSISTENT_ITEM": 249,
	"DEV_REPLACE": 250, "UUID_KEY_SUBVOL": 251, "UUID_KEY_RECEIVED_SUBVOL": 252,
}

// dumpTreeItems runs dump-tree for tree (an id or a name like "root") and
// returns each item as "key itemoff itemsize".
func dumpTreeItems(t testing.TB, tree string, imgs ...string) []string {
	t.Helper()
	requireTools(t, false, "btrfs")
	out := run(t, "btrfs", append([]string{"inspect-internal", "dump-tree", "-t", tree}, imgs...)...)
	var items []string
	for _, m := range dumpItemRE.FindAllStringSubmatch(out, -1) {
		obj, ok := progsObjectIDs[m[1]]
		if !ok {
			n, err := strconv.ParseInt(m[1], 10, 64) // dump-tree prints "negative" ids signed
			if err != nil {
				t.Fatalf("dump-tree objectid %q unknown to the test", m[1])
			}
			obj = uint64(n)
		}
		typ, ok := progsTypes[m[2]]
		if !ok {
			n, err := strconv.ParseUint(strings.TrimPrefix(m[2], "UNKNOWN."), 10, 8)
			if err != nil {
				t.Fatalf("dump-tree type %q unknown to the test", m[2])
			}
			typ = uint8(n)
		}
		off, err := strconv.ParseUint(m[3], 10, 64)
		if err != nil {
			n, err2 := strconv.ParseInt(m[3], 10, 64)
			if err2 != nil {
				t.Fatalf("dump-tree offset %q: %v", m[3], err)
			}
			off = uint64(n)
		}
		k := Key{obj, typ, off}
		items = append(items, fmt.Sprintf("%v %s %s", k, m[4], m[5]))
	}
	return items
}

// walkItemsWithOffsets lists every item of tr, leaf by leaf, in dump-tree's
// form (itemoff is relative to the end of the header).
func walkItemsWithOffsets(t testing.TB, tr Tree) []string {
	t.Helper()
	p, err := tr.descend(Key{}, false, new([maxTreeLevel]pathLevel))
	if err != nil {
		t.Fatal(err)
	}
	var items []string
	for more := true; more; {
		leaf := p[len(p)-1].n
		for i := range leaf.nritems {
			h := leaf.b[headerSize+i*itemHdrSize+diskKeySize:]
			items = append(items, fmt.Sprintf("%v %d %d", leaf.key(i),
				binary.LittleEndian.Uint32(h), binary.LittleEndian.Uint32(h[4:])))
		}
		if more, err = tr.nextLeaf(p, MaxKey); err != nil {
			t.Fatal(err)
		}
	}
	// Walk must agree with the leaf-by-leaf listing.
	n := 0
	err = tr.Walk(Key{}, MaxKey, func(it Item) error {
		if n >= len(items) || !strings.HasPrefix(items[n], it.Key.String()+" ") {
			t.Errorf("Walk item %d is %v, leaf listing has %q", n, it.Key, items[min(n, len(items)-1)])
			return ErrStopWalk
		}
		n++
		return nil
	})
	if err != nil || n != len(items) {
		t.Errorf("Walk: %v after %d of %d items", err, n, len(items))
	}
	return items
}

func checkTreeAgainstDump(t *testing.T, imgs []string, tr Tree, name string) {
	t.Helper()
	want := dumpTreeItems(t, name, imgs...)
	got := walkItemsWithOffsets(t, tr)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s tree: btrfsread and dump-tree differ:\nbtrfsread:\n%s\ndump-tree:\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(got) == 0 {
		t.Errorf("%s tree: no items", name)
	}
}
