package sendgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"sendfs/btrfsread"
)

// planFileCommands is a stream of a few thousand small files, whose plan
// takes many pages: data runs of one and of several commands, holes,
// inline extents with their bytes.
func planFileCommands() []Command {
	s := &synth{chunk: 4096}
	s.begin()
	for i := range 3000 {
		s.file(300+uint64(i), fmt.Sprintf("d/f%04d", i), uint64(i%7)*1000+1, 3, uint64(i%3)*4096+5)
	}
	s.end()
	for i := range s.cmds {
		if d := s.cmds[i].Data; d != nil && i%5 == 0 && d.Len < 4096 {
			d.Extent = btrfsread.FileExtent{Type: btrfsread.ExtentInline, Generation: 7, RamBytes: uint64(d.Len), Inline: bytes.Repeat([]byte{byte(i)}, int(d.Len))}
		}
	}
	return s.cmds
}

// lockedLog is a mount's log as a test reads it.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// cachedStream is a fresh stream of cmds (a new mount) whose plans are
// kept in dir, with its size known (as the mount's size cache knows it).
func cachedStream(t *testing.T, cmds []Command, dir string, size int64) (*Stream, *lockedLog) {
	t.Helper()
	log := &lockedLog{}
	s := synthStream(t, 1, cmds)
	s.UsePlanCache(NewPlanCache(dir, slog.New(slog.NewTextHandler(log, nil))))
	if size >= 0 {
		if err := s.settleSize(size); err != nil {
			t.Fatal(err)
		}
	}
	return s, log
}

// keepPlan builds the plan of a stream of cmds with the cache in dir, as a
// reader that jumps does, and waits until it is kept.
func keepPlan(t *testing.T, cmds []Command, dir string, want []byte) {
	t.Helper()
	s, log := cachedStream(t, cmds, dir, int64(len(want)))
	r, _ := s.NewReader(context.Background())
	off := int64(len(want)) * 95 / 100
	buf := make([]byte, 4096)
	if n, err := r.ReadAt(buf, off); err != nil || !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
		t.Fatalf("read at %d: %d, %v; or bytes differ", off, n, err)
	}
	waitKept(t, s)
	r.Close()
	noLog(t, log)
}

// waitKept waits until the plan of s is whole and served from its file.
func waitKept(t *testing.T, s *Stream) {
	t.Helper()
	if _, err := s.getPlan(context.Background()); err != nil {
		t.Fatal(err)
	}
	for {
		s.planMu.Lock()
		p := s.build.plan()
		s.planMu.Unlock()
		if p.file != nil {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPlanFileRoundTrip: every page of a kept plan decodes to the
// segments of the plan built in memory.
func TestPlanFileRoundTrip(t *testing.T) {
	cmds := planFileCommands()
	s := synthStream(t, 1, cmds)
	p, err := s.getPlan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := NewPlanCache(dir, slog.New(slog.DiscardHandler))
	kept := c.keep(context.Background(), s, p)
	if kept == nil || kept.file == nil || kept.size != p.size || !kept.whole {
		t.Fatalf("plan not kept: %+v", kept)
	}
	pf := kept.file
	if len(pf.index) < 4 {
		t.Fatalf("%d pages: the test wants several", len(pf.index))
	}
	var segs []segment
	for i := range pf.index {
		pg, err := pf.page(i)
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, pg.segs...)
	}
	if !reflect.DeepEqual(segs, p.segs) {
		t.Fatal("the pages decode to other segments than the plan's")
	}
	st, _ := os.Stat(pf.path)
	t.Logf("%d segments, stream %d bytes: file %d bytes in %d pages", len(p.segs), p.size, st.Size(), len(pf.index))
}

// TestPlanCacheNextMount: a plan kept by one stream serves a new stream of
// the same key (the next mount) at once: random reads and a sequential
// one give the same bytes as WriteTo, and no engine pass runs.
func TestPlanCacheNextMount(t *testing.T) {
	cmds := planFileCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	dir := t.TempDir()
	keepPlan(t, cmds, dir, want)
	s, log := cachedStream(t, cmds, dir, int64(len(want)))
	withoutEngine(t, s)
	checkRanges(t, s, want, 300, 300_000, rand.New(rand.NewPCG(3, 4)))
	r, _ := s.NewReader(context.Background())
	readPass(t, r, want, int64(len(want))/3, 128<<10, 2, rand.New(rand.NewPCG(5, 6)))
	r.Close()
	noLog(t, log)
}

// TestPlanCacheRejects: a plan file that does not check out is ignored
// with a log line and removed, and the reads give WriteTo's bytes all the
// same, from a plan built again: truncated, of another format version,
// of another stream, of another length than the stream's, or with a
// corrupt page (found only when a read needs it).
func TestPlanCacheRejects(t *testing.T) {
	cmds := planFileCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	// Another stream under the same key: one file less.
	other := withoutSecondFile(cmds)
	otherWant := writeAll(t, synthStream(t, 1, other))
	for _, tc := range []struct {
		name    string
		damage  func(path string, b []byte) []byte
		otherOf bool // the file is that of the other stream
	}{
		{name: "truncated", damage: func(_ string, b []byte) []byte { return b[:len(b)/2] }},
		{name: "empty", damage: func(string, []byte) []byte { return nil }},
		{name: "version", damage: func(_ string, b []byte) []byte { b[len(planMagic)-3]++; return b }},
		{name: "other key", damage: func(_ string, b []byte) []byte { b[len(planMagic)+10] ^= 1; return b }},
		{name: "corrupt index", damage: func(_ string, b []byte) []byte { b[len(b)-planTrailerLen-5] ^= 0x10; return b }},
		{name: "corrupt page", damage: func(_ string, b []byte) []byte { b[len(b)*9/10] ^= 0x40; return b }},
		{name: "other length", otherOf: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.otherOf {
				keepPlan(t, other, dir, otherWant)
			} else {
				keepPlan(t, cmds, dir, want)
			}
			s, log := cachedStream(t, cmds, dir, int64(len(want)))
			path := s.plans.path(s.key)
			if tc.damage != nil {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, tc.damage(path, b), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			checkRanges(t, s, want, 200, 300_000, rand.New(rand.NewPCG(7, 8)))
			out := log.String()
			if !strings.Contains(out, "cached stream plan ignored") {
				t.Fatal("no log line for the rejected plan")
			}
			// The plan built again is kept in its place, and serves the
			// next stream.
			waitKept(t, s)
			next, log := cachedStream(t, cmds, dir, int64(len(want)))
			checkRanges(t, next, want, 50, 300_000, rand.New(rand.NewPCG(9, 10)))
			noLog(t, log)
		})
	}
}

// withoutEngine makes any engine pass of s fail the test: its plan is
// kept.
func withoutEngine(t *testing.T, s *Stream) {
	s.gen = func(context.Context, emitter) error {
		t.Error("an engine pass ran though the plan was kept")
		return fmt.Errorf("no engine")
	}
}

// noLog fails the test if anything was logged.
func noLog(t *testing.T, log *lockedLog) {
	t.Helper()
	if out := log.String(); out != "" {
		t.Fatalf("log: %s", out)
	}
}

// withoutSecondFile is cmds without the second file's commands.
func withoutSecondFile(cmds []Command) []Command {
	var out []Command
	files := 0
	for _, c := range cmds {
		if c.Cmd == CmdMkfile {
			files++
		}
		if files != 2 {
			out = append(out, c)
		}
	}
	return out
}

// TestPlanKeptByCount: a counting pass with a plan cache writes the plan
// there on the way, and a new stream of the same key (the next mount)
// serves reads in any order from it without an engine pass.
func TestPlanKeptByCount(t *testing.T) {
	cmds := planFileCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	dir := t.TempDir()
	s, log := cachedStream(t, cmds, dir, -1)
	if n, err := s.Size(context.Background()); err != nil || n != int64(len(want)) {
		t.Fatalf("Size = %d, %v; want %d", n, err, len(want))
	}
	next, _ := cachedStream(t, cmds, dir, int64(len(want)))
	withoutEngine(t, next)
	checkRanges(t, next, want, 300, 300_000, rand.New(rand.NewPCG(11, 12)))
	noLog(t, log)
}

// TestPlanNotKeptByFailedCount: a counting pass that fails keeps no plan,
// leaves no temporary file, and logs nothing: the failure is Size's error.
func TestPlanNotKeptByFailedCount(t *testing.T) {
	dir := t.TempDir()
	s, log := cachedStream(t, planFileCommands(), dir, -1)
	failure := errors.New("the pass failed")
	s.gen = func(ctx context.Context, out emitter) error {
		cmd := Command{Cmd: CmdSubvol}
		if err := out.emit(&cmd); err != nil {
			return err
		}
		return failure
	}
	if _, err := s.Size(context.Background()); !errors.Is(err, failure) {
		t.Fatalf("Size: %v, want %v", err, failure)
	}
	noLog(t, log)
	if left, _ := os.ReadDir(filepath.Join(dir, "plans")); len(left) != 0 {
		t.Fatalf("the failed count left %d files in plans/", len(left))
	}
}

// TestPlanRejectedAfterMove: a plan file whose data runs were planned at
// another generation of their subvolume than the stream reads now (a live
// mount that followed a balance, under the key of the first view) is
// ignored with a log line, and the bytes come from a plan built again.
func TestPlanRejectedAfterMove(t *testing.T) {
	dir := t.TempDir()
	cmds := planFileCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	first, log := cachedStream(t, cmds, dir, -1)
	child, _, _ := first.pair()
	for i := range cmds {
		if d := cmds[i].Data; d != nil && !d.Zero {
			d.Subvol = child
		}
	}
	if n, err := first.Size(context.Background()); err != nil || n != int64(len(want)) {
		t.Fatalf("Size = %d, %v; want %d", n, err, len(want))
	}
	noLog(t, log)
	moved, log := cachedStream(t, cmds, dir, int64(len(want)))
	c, _, _ := moved.pair()
	c.Root.Generation++
	checkRanges(t, moved, want, 50, 300_000, rand.New(rand.NewPCG(15, 16)))
	if !strings.Contains(log.String(), "cached stream plan ignored") || !strings.Contains(log.String(), "may have moved") {
		t.Fatalf("no log line for the moved plan: %q", log.String())
	}
}

// TestPlanDroppedBySize: a cached plan of another length, loaded before
// the stream's size was known, is dropped once Size finds the length, and
// reads go on from a plan built again.
func TestPlanDroppedBySize(t *testing.T) {
	cmds := planFileCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	other := withoutSecondFile(cmds)
	dir := t.TempDir()
	keepPlan(t, other, dir, writeAll(t, synthStream(t, 1, other)))
	s, log := cachedStream(t, cmds, dir, -1)
	if !s.planWhole(context.Background()) {
		t.Fatal("the cached plan was not loaded")
	}
	if n, err := s.Size(context.Background()); err != nil || n != int64(len(want)) {
		t.Fatalf("Size = %d, %v; want %d", n, err, len(want))
	}
	if !strings.Contains(log.String(), "cached stream plan ignored") {
		t.Fatalf("no log line for the dropped plan: %q", log.String())
	}
	checkRanges(t, s, want, 100, 300_000, rand.New(rand.NewPCG(13, 14)))
}

// TestPlanCacheEvicts: past its bound, the cache removes the least
// recently used plans (a plan read counts as used), and temporary files
// left by a process that died.
func TestPlanCacheEvicts(t *testing.T) {
	s := synthStream(t, 1, planFileCommands())
	p, err := s.getPlan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := NewPlanCache(dir, slog.New(slog.DiscardHandler))
	keep := func(key string) {
		t.Helper()
		s.key = key
		if c.keep(context.Background(), s, p) == nil {
			t.Fatalf("plan %s not kept", key)
		}
	}
	keep("a")
	st, err := os.Stat(c.path("a"))
	if err != nil {
		t.Fatal(err)
	}
	c.max = st.Size() * 5 / 2
	old := filepath.Join(c.dir, ".tmp-old")
	fresh := filepath.Join(c.dir, ".tmp-fresh")
	for _, f := range []string{old, fresh} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(old, time.Now().Add(-48*time.Hour), time.Now().Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	keep("b")
	s.key = "a"
	if c.load(context.Background(), s) == nil { // a is used again: b is older
		t.Fatal("plan a not loaded")
	}
	keep("c")
	for key, kept := range map[string]bool{"a": true, "b": false, "c": true} {
		if _, err := os.Stat(c.path(key)); (err == nil) != kept {
			t.Errorf("plan %s: kept %v, want %v", key, err == nil, kept)
		}
	}
	for f, kept := range map[string]bool{old: false, fresh: true} {
		if _, err := os.Stat(f); (err == nil) != kept {
			t.Errorf("%s: kept %v, want %v", f, err == nil, kept)
		}
	}
}
