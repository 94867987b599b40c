package sendgen

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"sendfs/btrfsread"
)

func TestNewStreamChecks(t *testing.T) {
	ro := func(id uint64) *btrfsread.Subvolume {
		return &btrfsread.Subvolume{ID: id, Path: "s", Root: btrfsread.RootItem{Flags: btrfsread.RootSubvolReadOnly}}
	}
	rw := &btrfsread.Subvolume{ID: 5}
	for _, tc := range []struct {
		name          string
		child, parent *btrfsread.Subvolume
		opts          Options
		want          string // error substring, "" for success
	}{
		{"full", ro(256), nil, Options{}, ""},
		{"incremental", ro(257), ro(256), Options{}, ""},
		{"nil child", nil, nil, Options{}, "no subvolume"},
		{"writable", rw, nil, Options{}, "not read-only"},
		{"writable allowed", rw, nil, Options{AllowWritable: true}, ""},
		{"writable parent", ro(256), rw, Options{}, "parent subvolume <top level> (id 5) is not read-only"},
		{"own parent", ro(256), ro(256), Options{}, "its own parent"},
		{"protocol", ro(256), nil, Options{Protocol: 3}, "protocol 3"},
	} {
		_, err := NewStream(tc.child, tc.parent, tc.opts)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestCacheKey(t *testing.T) {
	child := &btrfsread.Subvolume{ID: 256, Root: btrfsread.RootItem{Flags: 1, UUID: testUUID, Generation: 9, CTransid: 8}}
	parent := &btrfsread.Subvolume{ID: 257, Root: btrfsread.RootItem{Flags: 1, Generation: 7, CTransid: 6}}
	full, _ := NewStream(child, nil, Options{})
	incr, _ := NewStream(child, parent, Options{})
	if full.CacheKey() == incr.CacheKey() {
		t.Fatalf("full and incremental share the key %q", full.CacheKey())
	}
	if !strings.Contains(full.CacheKey(), "parent=full") || !strings.Contains(incr.CacheKey(), ":7:6") {
		t.Errorf("keys miss their parts: %q, %q", full.CacheKey(), incr.CacheKey())
	}
	again, _ := NewStream(child, nil, Options{Protocol: 1})
	if again.CacheKey() != full.CacheKey() {
		t.Errorf("protocol 0 and 1 give different keys: %q, %q", full.CacheKey(), again.CacheKey())
	}
}

// TestSizeAndWriteTo: counted size, pipelined output and the sequential
// reference encoding agree, and two runs give the same bytes.
func TestSizeAndWriteTo(t *testing.T) {
	for _, tc := range []struct {
		proto int
		chunk uint32
	}{{1, 49152}, {1, 1000}, {1, 1}, {2, 131072}} {
		proto, chunk := tc.proto, tc.chunk
		cmds := sampleCommands(chunk)
		want := encodeSequential(t, proto, cmds)
		s := synthStream(t, proto, cmds)
		size, err := s.Size(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := writeAll(t, s)
		if size != int64(len(got)) || !bytes.Equal(got, want) {
			t.Fatalf("chunk %d: size %d, WriteTo %d bytes, sequential %d bytes, equal %v", chunk, size, len(got), len(want), bytes.Equal(got, want))
		}
		if again := writeAll(t, synthStream(t, proto, cmds)); !bytes.Equal(again, got) {
			t.Fatalf("chunk %d: two runs differ", chunk)
		}
	}
}

func TestMalformedEngineOutput(t *testing.T) {
	s := &synth{chunk: 100}
	s.begin()
	s.file(258, "f", 10)
	noEnd := s.cmds
	s.end()
	afterEnd := append(append([]Command{}, s.cmds...), s.cmds[1])
	for _, tc := range []struct {
		name string
		cmds []Command
		want string
	}{
		{"no END", noEnd, "without END"},
		{"after END", afterEnd, "after END"},
		{"no SUBVOL", s.cmds[1:], "instead of SUBVOL"},
		{"empty", nil, "without END"},
	} {
		st := synthStream(t, 1, tc.cmds)
		_, err := st.Size(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Size error %v, want %q", tc.name, err, tc.want)
		}
		var buf bytes.Buffer
		if _, err := synthStream(t, 1, tc.cmds).WriteTo(context.Background(), &buf, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: WriteTo error %v, want %q", tc.name, err, tc.want)
		}
	}
}
