package sendgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// checkRanges compares n random ranges of up to maxLen bytes read through a
// fresh Reader of s with the same slices of want, plus the edges.
func checkRanges(t testing.TB, s *Stream, want []byte, n, maxLen int, rng *rand.Rand) {
	t.Helper()
	r, err := s.NewReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := readerSize(t, r); n != int64(len(want)) {
		t.Fatalf("reader size %d, stream %d bytes", n, len(want))
	}
	size := int64(len(want))
	check := func(off int64, l int) {
		t.Helper()
		buf := make([]byte, l)
		got, err := r.ReadAt(buf, off)
		wantN := int(max(0, min(int64(l), size-off)))
		wantErr := off+int64(l) > size
		if got != wantN || (err != nil) != wantErr || (err != nil && !errors.Is(err, io.EOF)) {
			t.Fatalf("ReadAt(%d bytes at %d) of %d = %d, %v", l, off, size, got, err)
		}
		if wantN > 0 && !bytes.Equal(buf[:got], want[off:off+int64(got)]) {
			t.Fatalf("ReadAt(%d bytes at %d) differs from WriteTo", l, off)
		}
	}
	check(0, len(want))
	check(0, len(want)+10)
	check(size, 1)
	check(size+5, 1)
	check(size-1, 1)
	check(3, 0)
	for range n {
		off := rng.Int64N(size)
		l := rng.IntN(int(min(size-off, int64(maxLen))) + 1)
		if rng.IntN(8) == 0 {
			l += 7 // past the end sometimes
		}
		check(off, l)
	}
}

// readerSize is the length of r's stream, which must not fail.
func readerSize(t testing.TB, r *Reader) int64 {
	t.Helper()
	n, err := r.s.Size(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReaderRanges: random ranges through ReadAt equal the slices of the
// WriteTo output, for several chunk sizes (one byte per WRITE makes many
// tiny runs; 49152 the kernel's).
func TestReaderRanges(t *testing.T) {
	for _, tc := range []struct {
		proto int
		chunk uint32
	}{{1, 49152}, {1, 1000}, {1, 1}, {2, 131072}} {
		cmds := sampleCommands(tc.chunk)
		want := writeAll(t, synthStream(t, tc.proto, cmds))
		maxLen := 100 * int(tc.chunk) // about a FUSE request's worth of commands
		checkRanges(t, synthStream(t, tc.proto, cmds), want, 1000, maxLen, rand.New(rand.NewPCG(uint64(tc.chunk), 1)))
	}
}

// TestReaderSequentialConcurrent reads the whole stream through one Reader
// the way FUSE does: fixed-size requests, several in flight at once.
func TestReaderSequentialConcurrent(t *testing.T) {
	s := &synth{chunk: 49152}
	s.begin()
	for i := range 20 {
		s.file(300+uint64(i), "f"+string(rune('a'+i)), uint64(i)*70000+1, 50000)
	}
	s.end()
	want := writeAll(t, synthStream(t, 1, s.cmds))
	st := synthStream(t, 1, s.cmds)
	r, err := st.NewReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	const req = 128 << 10
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for off := 0; off < len(want); off += req {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			end := min(off+req, len(want))
			if n, err := r.ReadAt(got[off:end], int64(off)); n != end-off || (err != nil && err != io.EOF) {
				t.Errorf("ReadAt at %d = %d, %v", off, n, err)
			}
		})
	}
	wg.Wait()
	if !bytes.Equal(got, want) {
		t.Fatal("concurrent sequential reads differ from WriteTo")
	}
}

// TestPlanIsCompact: the plan keeps one run per extent, not one entry per
// WRITE, and no file data.
func TestPlanIsCompact(t *testing.T) {
	s := &synth{chunk: 49152}
	s.begin()
	s.file(258, "huge", 1<<30) // 21846 WRITEs of one extent
	s.end()
	st := synthStream(t, 1, s.cmds)
	p, err := st.getPlan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	for _, seg := range p.segs {
		if seg.run != nil {
			runs++
		}
	}
	if runs != 1 || len(p.segs) != 3 {
		t.Fatalf("plan has %d segments, %d runs; want 3 and 1", len(p.segs), runs)
	}
	size, err := synthStream(t, 1, s.cmds).Size(context.Background())
	if err != nil || size != p.size {
		t.Fatalf("plan size %d, counted %d (%v)", p.size, size, err)
	}
	r, _ := st.NewReader(context.Background())
	tail := make([]byte, 100)
	if n, err := r.ReadAt(tail, size-100); n != 100 || err != nil {
		t.Fatalf("reading the tail: %d, %v", n, err)
	}
}

// TestReaderRetriesErrors: a failed data read fails the ReadAt, is not
// cached, and a later read succeeds once the data is readable.
func TestReaderRetriesErrors(t *testing.T) {
	cmds := sampleCommands(49152)
	want := writeAll(t, synthStream(t, 1, cmds))
	st := synthStream(t, 1, cmds)
	var mu sync.Mutex
	broken := true
	errBad := errors.New("bad sector")
	st.read = func(ref *DataRef, p []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			return errBad
		}
		return patternRead(ref, p)
	}
	r, err := st.NewReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(want))
	if _, err := r.ReadAt(buf, 0); !errors.Is(err, errBad) {
		t.Fatalf("ReadAt over bad data: %v", err)
	}
	mu.Lock()
	broken = false
	mu.Unlock()
	if n, err := r.ReadAt(buf, 0); n != len(want) || err != nil || !bytes.Equal(buf, want) {
		t.Fatalf("ReadAt after repair: %d, %v, equal %v", n, err, bytes.Equal(buf, want))
	}
}

// TestPlanRetriesEngineErrors: a failed plan build fails the reads that
// wait for it and is not remembered: the next read builds again.
func TestPlanRetriesEngineErrors(t *testing.T) {
	cmds := sampleCommands(1000)
	want := writeAll(t, synthStream(t, 1, cmds))
	st := synthStream(t, 1, cmds)
	replay := st.gen
	var fail atomic.Bool
	fail.Store(true)
	errTransient := errors.New("transient")
	st.gen = func(ctx context.Context, out emitter) error {
		if fail.Load() {
			return errTransient
		}
		return replay(ctx, out)
	}
	r, err := st.NewReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(want))
	if _, err := r.ReadAt(buf, 0); !errors.Is(err, errTransient) {
		t.Fatalf("ReadAt over a failing engine: %v", err)
	}
	fail.Store(false)
	if n, err := r.ReadAt(buf, 0); n != len(want) || err != nil || !bytes.Equal(buf, want) {
		t.Fatalf("ReadAt after the engine recovered: %d, %v", n, err)
	}
}

// TestReaderManyTinyCommands reads a stream of about 60,000 one-byte
// WRITEs in one ReadAt: the cost per command must stay constant (an eviction scan per
// command once made this quadratic, minutes instead of milliseconds).
func TestReaderManyTinyCommands(t *testing.T) {
	s := &synth{chunk: 1}
	s.begin()
	for i := range 60 {
		// f's one-byte extents alternate data and zeros, each WRITE its own
		// run; g's 980 WRITEs share one run.
		s.file(300+uint64(i), "f", 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
		s.file(400+uint64(i), "g", 980)
	}
	s.end()
	want := writeAll(t, synthStream(t, 1, s.cmds))
	r, err := synthStream(t, 1, s.cmds).NewReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if n, err := r.ReadAt(got, 0); n != len(want) || err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadAt of the whole stream: %d of %d bytes, %v", n, len(want), err)
	}
}

// windowCommands is a stream of about 24 MiB whose block boundaries fall
// inside data commands, between them and inside metadata.
func windowCommands() []Command {
	s := &synth{chunk: 49152}
	s.begin()
	for i := range 12 {
		s.file(300+uint64(i), fmt.Sprintf("f%02d", i), uint64(i)*400_009+1, 77_777, 1<<20+uint64(i)*3)
	}
	s.end()
	return s.cmds
}

// readPass reads r from start to its end in requests of size req through
// ReadView, inFlight at once, each pair of neighbouring requests swapped
// at random (the kernel's asynchronous readahead arrives slightly out of
// order). It checks every request against want and that the window stays
// bounded, and returns how many views were lent.
func readPass(t *testing.T, r *Reader, want []byte, start int64, req, inFlight int, rng *rand.Rand) (lent int64) {
	t.Helper()
	var offs []int64
	for off := start; off < int64(len(want)); off += int64(req) {
		offs = append(offs, off)
	}
	for i := 0; i+1 < len(offs); i += 2 {
		if rng.IntN(2) == 0 {
			offs[i], offs[i+1] = offs[i+1], offs[i]
		}
	}
	var lentN atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, inFlight)
	for _, off := range offs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			v, err := r.ReadView(make([]byte, req), off)
			if err != nil {
				t.Errorf("ReadView at %d: %v", off, err)
				return
			}
			defer v.Release()
			if v.block != nil {
				lentN.Add(1)
			}
			end := min(off+int64(req), int64(len(want)))
			if !bytes.Equal(v.Data, want[off:end]) {
				t.Errorf("ReadView(%d bytes at %d) differs from WriteTo", req, off)
			}
			r.win.mu.Lock()
			n := len(r.win.blocks)
			r.win.mu.Unlock()
			if n > maxBehind+maxWindowRead/blockSize+maxAhead {
				t.Errorf("window holds %d blocks", n)
			}
		})
	}
	wg.Wait()
	return lentN.Load()
}

// TestReaderWindow: sequential passes in FUSE-like requests, slightly out
// of order, give the bytes of WriteTo: lent whole from the window when a
// request lies in one block, copied when it spans blocks, read directly
// when it is too big for the window.
func TestReaderWindow(t *testing.T) {
	cmds := windowCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	st := synthStream(t, 1, cmds)
	for _, tc := range []struct {
		req      int
		wantLent bool
	}{{blockSize, true}, {128 << 10, true}, {blockSize * 3 / 2, false}, {maxWindowRead + 1, false}} {
		r, err := st.NewReader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		lent := readPass(t, r, want, 0, tc.req, 3, rand.New(rand.NewPCG(uint64(tc.req), 2)))
		requests := (int64(len(want)) + int64(tc.req) - 1) / int64(tc.req)
		if tc.wantLent && lent < requests/2 || !tc.wantLent && lent > 0 {
			t.Errorf("requests of %d bytes: %d of %d views lent", tc.req, lent, requests)
		}
	}
}

// TestReaderReordered: with the process's read-ahead used up by other
// readers (the window makes only the blocks asked for), requests that
// overlap, overtake each other by up to maxAhead blocks, come late for the
// rest of a block or again for a block read whole are all served without
// starting the window's pass again and without a plan.
func TestReaderReordered(t *testing.T) {
	cmds := windowCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	st := synthStream(t, 1, cmds)
	blocksLive.Add(maxReadAhead)
	defer blocksLive.Add(-maxReadAhead)
	type read struct{ off, n int64 }
	const tail = 64 << 10
	reads := []read{{0, blockSize}, {blockSize, blockSize}, {2 * blockSize, blockSize}, {blockSize, 4096},
		// Block 3's head twice, its middle, the next blocks, its tail.
		{3 * blockSize, tail}, {3 * blockSize, tail}, {3*blockSize + tail, blockSize - 2*tail},
		{4 * blockSize, blockSize}, {5 * blockSize, blockSize}, {6 * blockSize, blockSize},
		{4*blockSize - tail, tail}}
	// Then groups of maxAhead requests, each group last first, one page
	// off the blocks.
	n := int64(len(want)) / blockSize
	for lo := int64(7); lo < n; lo += maxAhead {
		for k := min(lo+maxAhead, n) - 1; k >= lo; k-- {
			reads = append(reads, read{k*blockSize + 4096, blockSize})
		}
	}
	// Another reader: blocks 0 to 7, block 3 again (dropped by then), 8.
	var again []read
	for k := range int64(8) {
		again = append(again, read{k * blockSize, blockSize})
	}
	again = append(again, read{3 * blockSize, 4096}, read{8 * blockSize, blockSize})
	for _, reads := range [][]read{reads, again} {
		r, err := st.NewReader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var feed *feed
		for i, rd := range reads {
			v, err := r.ReadView(make([]byte, rd.n), rd.off)
			if err != nil {
				t.Fatalf("read at %d: %v", rd.off, err)
			}
			if !bytes.Equal(v.Data, want[rd.off:min(rd.off+rd.n, int64(len(want)))]) {
				t.Fatalf("read at %d differs from WriteTo", rd.off)
			}
			v.Release()
			r.win.mu.Lock()
			if i == 0 {
				feed = r.win.feed
			} else if r.win.feed != feed {
				t.Errorf("the read at %d started the pass again", rd.off)
			}
			r.win.mu.Unlock()
		}
		r.Close()
		st.planMu.Lock()
		if st.build != nil {
			t.Errorf("reads %v built a plan", reads)
		}
		st.planMu.Unlock()
	}
}

// TestReaderConcurrentPasses: sequential passes from different offsets
// through one Reader at once (they take the window from each other) all
// get the right bytes.
func TestReaderConcurrentPasses(t *testing.T) {
	cmds := windowCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	r, err := synthStream(t, 1, cmds).NewReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range int64(3) {
		wg.Go(func() {
			readPass(t, r, want, i*int64(len(want))/3+i*4099, 128<<10, 2, rand.New(rand.NewPCG(uint64(i), 3)))
		})
	}
	wg.Wait()
}

// TestReaderWindowRetriesErrors: a data error met by a sequential pass
// fails that read only; once the data reads again, the pass goes on from
// there with the right bytes.
func TestReaderWindowRetriesErrors(t *testing.T) {
	cmds := windowCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	st := synthStream(t, 1, cmds)
	var broken atomic.Bool
	broken.Store(true)
	errBad := errors.New("bad sector")
	st.read = func(ref *DataRef, p []byte) error {
		if broken.Load() && ref.Ino == 305 && !ref.Zero {
			return errBad
		}
		return patternRead(ref, p)
	}
	r, err := st.NewReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, blockSize)
	failed := int64(-1)
	for off := int64(0); off < int64(len(want)) && failed < 0; off += blockSize {
		n, err := r.ReadAt(buf, off)
		switch {
		case errors.Is(err, errBad):
			failed = off
		case err != nil && err != io.EOF:
			t.Fatalf("ReadAt at %d: %v", off, err)
		case !bytes.Equal(buf[:n], want[off:off+int64(n)]):
			t.Fatalf("ReadAt at %d differs from WriteTo", off)
		}
	}
	if failed < 0 {
		t.Fatal("no read met the bad data")
	}
	broken.Store(false)
	readPass(t, r, want, failed, blockSize, 2, rand.New(rand.NewPCG(5, 5)))
}

// TestReaderClose: Close empties the window; the Reader still reads, and a
// new sequential pass opens a new window.
func TestReaderClose(t *testing.T) {
	cmds := windowCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	r, err := synthStream(t, 1, cmds).NewReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, blockSize)
	for off := int64(0); off < 3*blockSize; off += blockSize {
		if _, err := r.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	r.win.mu.Lock()
	n := len(r.win.blocks)
	r.win.mu.Unlock()
	if n != 0 {
		t.Fatalf("window holds %d blocks after Close", n)
	}
	if lent := readPass(t, r, want, 0, blockSize, 2, rand.New(rand.NewPCG(7, 7))); lent == 0 {
		t.Fatal("no window after Close")
	}
}

// TestReaderMixedPattern reads through one Reader in runs of sequential
// requests of random sizes broken by jumps, so reads move between the
// window and direct filling, across block edges and past the end.
func TestReaderMixedPattern(t *testing.T) {
	cmds := windowCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	r, err := synthStream(t, 1, cmds).NewReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(11, 13))
	size := int64(len(want))
	off := int64(0)
	for range 400 {
		if rng.IntN(10) == 0 {
			off = rng.Int64N(size)
		}
		l := rng.IntN(blockSize*3/2) + 1
		buf := make([]byte, l)
		n, err := r.ReadAt(buf, off)
		wantN := int(min(int64(l), size-off))
		if n != wantN || (err != nil) != (wantN < l) || !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
			t.Fatalf("ReadAt(%d bytes at %d) of %d = %d, %v; or bytes differ", l, off, size, n, err)
		}
		off += int64(n)
		if off >= size {
			off = 0
		}
	}
}
