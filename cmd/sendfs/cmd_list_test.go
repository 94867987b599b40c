package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"sendfs/btrfsread"
)

func testSubvols() []*btrfsread.Subvolume {
	u := func(b byte) btrfsread.UUID {
		var x btrfsread.UUID
		for i := range x {
			x[i] = b + byte(i)
		}
		return x
	}
	created := uint64(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).Unix())
	return []*btrfsread.Subvolume{
		{ID: 256, ParentID: 5, Path: "home", Root: btrfsread.RootItem{
			Generation: 12, CTransid: 11, OTransid: 7, UUID: u(0x10),
			OTime: btrfsread.Timespec{Sec: created, Nsec: 123456789}}},
		{ID: 257, ParentID: 5, Path: "snaps/home.1", Root: btrfsread.RootItem{
			Generation: 9, CTransid: 8, OTransid: 8, Flags: btrfsread.RootSubvolReadOnly,
			UUID: u(0x20), ParentUUID: u(0x10), ReceivedUUID: u(0x30),
			OTime: btrfsread.Timespec{Sec: created + 3600}}},
		{ID: 258, ParentID: 256, Path: "home/odd\tname", Root: btrfsread.RootItem{}},
	}
}

func TestListTable(t *testing.T) {
	var b bytes.Buffer
	now := time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)
	if err := writeListTable(&b, testSubvols(), now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows:\n%s", b.String())
	}
	col := strings.Index(lines[0], "PATH")
	for _, row := range []struct {
		line int
		want []string
		path string
	}{
		{1, []string{"256", "12", "11", "(2 hours ago)", "rw", "10111213-1415-1617-1819-1a1b1c1d1e1f", "-"}, "home"},
		{2, []string{"257", "ro", "20212223-2425-2627-2829-2a2b2c2d2e2f", "10111213", "30313233", "(2 hours ago)"}, "snaps/home.1"},
		{3, []string{"258", "256"}, `"home/odd\tname"`},
	} {
		line := lines[row.line]
		for _, w := range row.want {
			if !strings.Contains(line, w) {
				t.Errorf("row %d lacks %q: %q", row.line, w, line)
			}
		}
		if got := line[col:]; got != row.path {
			t.Errorf("row %d: PATH column %q, want %q (columns not aligned?)", row.line, got, row.path)
		}
	}
	if fields := strings.Fields(lines[3]); fields[4] != "-" {
		t.Errorf("unset creation time should print '-': %q", lines[3])
	}
}

func TestListJSON(t *testing.T) {
	var b bytes.Buffer
	if err := writeListJSON(&b, testSubvols()); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(got) != 3 {
		t.Fatalf("got %d objects", len(got))
	}
	first, second, third := got[0], got[1], got[2]
	for key, want := range map[string]any{
		"id": 256.0, "parent_id": 5.0, "path": "home", "read_only": false,
		"generation": 12.0, "ctransid": 11.0, "otransid": 7.0,
		"created":     "2026-11-25T12:00:00.123456789Z",
		"uuid":        "10111213-1415-1617-1819-1a1b1c1d1e1f",
		"parent_uuid": nil, "received_uuid": nil,
	} {
		if first[key] != want {
			t.Errorf("first[%q] = %#v, want %#v", key, first[key], want)
		}
	}
	if second["read_only"] != true || second["parent_uuid"] != "10111213-1415-1617-1819-1a1b1c1d1e1f" ||
		second["received_uuid"] != "30313233-3435-3637-3839-3a3b3c3d3e3f" {
		t.Errorf("second = %v", second)
	}
	if third["created"] != nil || third["uuid"] != nil || third["path"] != "home/odd\tname" {
		t.Errorf("third = %v", third)
	}

	var again bytes.Buffer
	writeListJSON(&again, testSubvols())
	if again.String() != b.String() {
		t.Error("two runs gave different JSON")
	}
}

func TestListJSONEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := writeListJSON(&b, nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(b.String()); got != "[]" {
		t.Errorf("empty list printed %q, want []", got)
	}
}
