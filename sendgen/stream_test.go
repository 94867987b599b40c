package sendgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"sendfs/btrfsread"
)

func TestNewStreamChecks(t *testing.T) {
	ro := func(id uint64) *btrfsread.Subvolume {
		return &btrfsread.Subvolume{ID: id, Path: "s", Root: btrfsread.RootItem{Flags: btrfsread.RootSubvolReadOnly}}
	}
	rw := &btrfsread.Subvolume{ID: 258, Path: "w"}
	top := &btrfsread.Subvolume{ID: btrfsread.FSTreeID, Root: btrfsread.RootItem{Flags: btrfsread.RootSubvolReadOnly}}
	clones := func(svs ...*btrfsread.Subvolume) Options { return Options{CloneSources: svs} }
	for _, tc := range []struct {
		name          string
		child, parent *btrfsread.Subvolume
		opts          Options
		want          string // error substring, "" for success
		refused       Role   // the role of a *RefusedError, if one is wanted
	}{
		{"full", ro(256), nil, Options{}, "", ""},
		{"incremental", ro(257), ro(256), Options{}, "", ""},
		{"nil child", nil, nil, Options{}, "no subvolume", ""},
		{"writable", rw, nil, Options{}, "subvolume w is not read-only", RoleChild},
		{"writable allowed", rw, nil, Options{AllowWritable: true}, "", ""},
		{"writable parent", ro(256), rw, Options{}, "parent subvolume w is not read-only", RoleParent},
		{"top level", top, nil, Options{AllowWritable: true}, "the top level (id 5) cannot be sent", RoleChild},
		{"top level parent", ro(256), top, Options{}, "the top level (id 5) cannot be a parent", RoleParent},
		{"top level clone source", ro(256), nil, clones(top), "the top level (id 5) cannot be a clone source", RoleClone},
		// A parent that is also a clone source is refused as the latter.
		{"writable parent and clone source", ro(256), rw, clones(ro(257), rw), "clone source w is not read-only", RoleClone},
		{"own parent", ro(256), ro(256), Options{}, "", ""}, // the kernel sends an empty incremental
		{"protocol", ro(256), nil, Options{Protocol: 3}, "protocol 3", ""},
		{"protocol 2", ro(256), nil, Options{Protocol: 2}, "", ""},
		{"compressed v1", ro(256), nil, Options{Protocol: 1, CompressedData: true}, "needs protocol 2", ""},
		{"compressed", ro(256), nil, Options{CompressedData: true}, "", ""},
		{"writable clone source", ro(256), nil, clones(rw), "clone source w is not read-only", RoleClone},
	} {
		_, err := NewStream(tc.child, tc.parent, tc.opts)
		var re *RefusedError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		case tc.refused != "" && (!errors.As(err, &re) || re.Role != tc.refused):
			t.Errorf("%s: error %v, want a RefusedError for the %s", tc.name, err, tc.refused)
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
	keys := map[string]string{}
	for name, o := range map[string]Options{
		"v2":         {Protocol: 2},
		"compressed": {CompressedData: true},
		"no-data":    {NoData: true},
		"clone":      {CloneSources: []*btrfsread.Subvolume{parent}},
	} {
		s, err := NewStream(child, nil, o)
		if err != nil {
			t.Fatal(err)
		}
		k := s.CacheKey()
		if k == full.CacheKey() || keys[k] != "" {
			t.Errorf("options %s share the key %q", name, k)
		}
		keys[k] = name
	}
}

func TestOptionsString(t *testing.T) {
	a := &btrfsread.Subvolume{ID: 256, Root: btrfsread.RootItem{UUID: testUUID, Generation: 3, CTransid: 2}}
	b := &btrfsread.Subvolume{ID: 257, Root: btrfsread.RootItem{Generation: 5, CTransid: 4}}
	got := Options{CompressedData: true, NoData: true, CloneSources: []*btrfsread.Subvolume{b, a, b}}.String()
	same := Options{Protocol: 2, CompressedData: true, NoData: true, CloneSources: []*btrfsread.Subvolume{a, b}, AllowWritable: true}.String()
	if got != same {
		t.Errorf("equal options, different strings: %q and %q", got, same)
	}
	if !strings.HasPrefix(got, "proto=2 compressed-data no-data clone=") || strings.Count(got, ",") != 1 {
		t.Errorf("Options.String() = %q", got)
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

// TestWithPause: a pass under WithPause calls wait at its cancellation
// checks (every ctxCheckEvery commands) and fails with wait's error.
func TestWithPause(t *testing.T) {
	s := &synth{chunk: 4096}
	s.begin()
	for i := range 3 * ctxCheckEvery {
		s.attrs(fmt.Sprintf("f%d", i), 0o644)
	}
	s.end()
	stream := synthStream(t, 1, s.cmds)
	var calls int
	wait := func(context.Context) error { calls++; return nil }
	if _, err := stream.Size(WithPause(context.Background(), wait)); err != nil {
		t.Fatal(err)
	}
	if want := (len(s.cmds) + ctxCheckEvery - 1) / ctxCheckEvery; calls != want {
		t.Errorf("wait called %d times for %d commands, want %d", calls, len(s.cmds), want)
	}
	stop := errors.New("stop")
	if _, err := synthStream(t, 1, s.cmds).Size(WithPause(context.Background(), func(context.Context) error { return stop })); !errors.Is(err, stop) {
		t.Errorf("Size with a failing wait: %v, want %v", err, stop)
	}

	// A paused count holds no lock that asking for the size takes.
	stream = synthStream(t, 1, s.cmds)
	paused, resume := make(chan struct{}), make(chan struct{})
	wait = func(context.Context) error {
		if calls++; calls == 1 {
			close(paused)
			<-resume
		}
		return nil
	}
	calls = 0
	counted := make(chan error)
	go func() {
		_, err := stream.Size(WithPause(context.Background(), wait))
		counted <- err
	}()
	<-paused
	known := make(chan int64)
	go func() { known <- stream.knownSize() }()
	select {
	case n := <-known:
		if n != -1 {
			t.Errorf("size known as %d during the count", n)
		}
	case <-time.After(time.Minute):
		t.Error("asking for the size waited for a paused count")
	}
	close(resume)
	if err := <-counted; err != nil {
		t.Fatal(err)
	}
	if n := stream.knownSize(); n < 0 {
		t.Error("the count did not remember the size")
	}
}
