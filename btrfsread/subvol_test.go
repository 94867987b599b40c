package btrfsread

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// listedSubvol is one line of `btrfs subvolume list -u -q -R -g`, with the
// name, creation time and transid from `btrfs subvolume show`.
type listedSubvol struct {
	ID, Gen, TopLevel              uint64
	ParentUUID, ReceivedUUID, UUID string
	Path                           string
	ReadOnly                       bool
	Name, Created, GenAtCreation   string
}

// btrfsSubvolumeList runs `btrfs subvolume list` on a mounted filesystem.
func btrfsSubvolumeList(t testing.TB, mnt string) []listedSubvol {
	t.Helper()
	ro := map[uint64]bool{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "btrfs", "subvolume", "list", "-r", mnt)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			id, _ := strconv.ParseUint(f[1], 10, 64)
			ro[id] = true
		}
	}
	var out []listedSubvol
	for _, line := range strings.Split(strings.TrimSpace(run(t, "btrfs", "subvolume", "list", "-u", "-q", "-R", "-g", mnt)), "\n") {
		head, path, ok := strings.Cut(line, " path ")
		f := strings.Fields(head)
		if !ok || len(f) != 13 {
			t.Fatalf("unexpected btrfs subvolume list line %q", line)
		}
		num := func(s string) uint64 {
			n, err := strconv.ParseUint(s, 10, 64)
			noErr(t, err)
			return n
		}
		s := listedSubvol{ID: num(f[1]), Gen: num(f[3]), TopLevel: num(f[6]),
			ParentUUID: f[8], ReceivedUUID: f[10], UUID: f[12], Path: path}
		s.ReadOnly = ro[s.ID]
		show := run(t, "btrfs", "subvolume", "show", filepath.Join(mnt, path))
		s.Name, s.Created, s.GenAtCreation = showField(show, "Name"), showField(show, "Creation time"), showField(show, "Gen at creation")
		out = append(out, s)
	}
	return out
}

// showField returns the value of "Field:" in `btrfs subvolume show` output.
func showField(show, field string) string {
	for _, line := range strings.Split(show, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func uuidOrDash(u UUID) string {
	if u.IsZero() {
		return "-"
	}
	return uuid.UUID(u).String()
}

// compareSubvolumes checks Subvolumes() against the kernel's list (which
// leaves out the top level) and that every subvolume resolves by id, path
// and uuid.
func compareSubvolumes(t testing.TB, fs *FS, want []listedSubvol) []*Subvolume {
	t.Helper()
	svs, err := fs.Subvolumes()
	noErr(t, err)
	if len(svs) == 0 || svs[0].ID != FSTreeID || svs[0].Path != "" {
		t.Fatalf("first subvolume is not the top level: %+v", svs)
	}
	var got []listedSubvol
	for _, sv := range svs[1:] {
		got = append(got, listedSubvol{ID: sv.ID, Gen: sv.Root.Generation, TopLevel: sv.ParentID,
			ParentUUID: uuidOrDash(sv.Root.ParentUUID), ReceivedUUID: uuidOrDash(sv.Root.ReceivedUUID),
			UUID: uuidOrDash(sv.Root.UUID), Path: sv.Path, ReadOnly: sv.ReadOnly(),
			Name: sv.Name, Created: time.Unix(int64(sv.Root.OTime.Sec), 0).Format("2006-01-02 15:04:05 -0700"),
			GenAtCreation: strconv.FormatUint(sv.Root.OTransid, 10)})
	}
	received := 0
	for _, s := range want {
		if s.ReceivedUUID != "-" {
			received++
		}
	}
	if received == 0 {
		t.Errorf("no received subvolume in the list to compare")
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Subvolumes():\n got  %+v\n want %+v", got, want)
	}
	for _, sv := range svs[1:] {
		for _, spec := range []string{strconv.FormatUint(sv.ID, 10), sv.Path, "/" + sv.Path, uuid.UUID(sv.Root.UUID).String()} {
			found, err := fs.FindSubvolume(spec)
			if err != nil || found.ID != sv.ID {
				t.Errorf("FindSubvolume(%q) = %v, %v; want id %d", spec, found, err, sv.ID)
			}
		}
	}
	_, err = fs.FindSubvolume("no/such/subvolume")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no subvolume no/such/subvolume") {
		t.Errorf("FindSubvolume of a missing path: %v", err)
	}
	return svs
}

// makeSubvolumes adds nested subvolumes, snapshots (read-only and
// writable, taken between changes) and a deleted subvolume to mnt.
func makeSubvolumes(t testing.TB, mnt string) {
	t.Helper()
	btrfs := func(args ...string) { run(t, "btrfs", args...) }
	p := func(name string) string { return filepath.Join(mnt, name) }
	btrfs("subvolume", "create", p("sub"))
	writeFile(t, p("sub/in-sub"), textBytes(70000, 20))
	noErr(t, os.MkdirAll(p("d1/d2"), 0o755))
	btrfs("subvolume", "create", p("d1/d2/deep"))
	writeFile(t, p("d1/d2/deep/in-deep"), []byte("deep"))
	btrfs("subvolume", "create", p("sub/inner"))
	btrfs("subvolume", "create", p("gone"))
	noErr(t, os.Mkdir(p("snaps"), 0o755))
	btrfs("subvolume", "snapshot", "-r", mnt, p("snaps/top-1"))
	btrfs("subvolume", "snapshot", "-r", p("sub"), p("snaps/sub-1"))
	pwrite(t, p("text-1m"), 4096, []byte("changed after the first snapshot"))
	noErr(t, os.Remove(p("empty")))
	btrfs("subvolume", "snapshot", "-r", mnt, p("snaps/top-2"))
	btrfs("subvolume", "snapshot", p("sub"), p("sub-rw"))
	btrfs("subvolume", "delete", p("gone"))
	// A received subvolume carries received_uuid.
	noErr(t, os.Mkdir(p("recv"), 0o755))
	run(t, "bash", "-c", fmt.Sprintf("btrfs send -q %q | btrfs receive -q %q", p("snaps/sub-1"), p("recv")))
}

func TestSubvolumeString(t *testing.T) {
	for in, want := range map[string]string{
		"snaps/a b":  "snaps/a b",
		"snaps/été":  "snaps/été",
		"a\nb":       `"a\nb"`,
		"bad\xffutf": `"bad\xffutf"`,
	} {
		if got := (&Subvolume{ID: 256, Path: in}).String(); got != want {
			t.Errorf("String of %q = %q, want %q", in, got, want)
		}
	}
	if got := (&Subvolume{ID: FSTreeID}).String(); got != "<top level> (id 5)" {
		t.Errorf("the top level is %q", got)
	}
}
