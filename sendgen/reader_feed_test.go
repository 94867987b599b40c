package sendgen

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestWriteStreamFrom: a WriteTo pass started anywhere (in the header,
// inside metadata, inside a data command, at the end, past it) writes the
// stream's bytes from there on and knows where the stream ends.
func TestWriteStreamFrom(t *testing.T) {
	cmds := sampleCommands(1000)
	want := writeAll(t, synthStream(t, 1, cmds))
	size := int64(len(want))
	for start := range size + 3 {
		var got bytes.Buffer
		n, err := synthStream(t, 1, cmds).writeStream(context.Background(), &got, start, nil)
		if err != nil || n != size || !bytes.Equal(got.Bytes(), want[min(start, size):]) {
			t.Fatalf("from %d: %d, %v; bytes equal %v", start, n, err, bytes.Equal(got.Bytes(), want[min(start, size):]))
		}
	}
}

// planStarted reports whether a plan build was started for s.
func planStarted(s *Stream) bool {
	s.planMu.Lock()
	defer s.planMu.Unlock()
	return s.build != nil
}

// TestFeedFromOffsets: a fresh Reader read sequentially from anywhere
// gives WriteTo's bytes, served by a feed: in order, no plan is built; in
// FUSE-like requests slightly out of order, the bytes are the same.
func TestFeedFromOffsets(t *testing.T) {
	cmds := windowCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	size := int64(len(want))
	for _, start := range []int64{0, 5, blockSize, 3*blockSize + 12345, size / 2, size - blockSize/2, size - 1} {
		st := synthStream(t, 1, cmds)
		r, err := st.NewReader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 128<<10)
		for off := start; off < size; off += int64(len(buf)) {
			n, err := r.ReadAt(buf, off)
			if (err != nil && err != io.EOF) || !bytes.Equal(buf[:n], want[off:min(off+int64(len(buf)), size)]) {
				t.Fatalf("from %d: ReadAt at %d: %d, %v; or bytes differ", start, off, n, err)
			}
		}
		if planStarted(st) {
			t.Errorf("from %d: a sequential pass started a plan", start)
		}
		r.Close()
		r, _ = synthStream(t, 1, cmds).NewReader(context.Background())
		readPass(t, r, want, start, 128<<10, 2, rand.New(rand.NewPCG(uint64(start), 9)))
		r.Close()
	}
}

// TestReaderJumpDuringPass: while a sequential pass goes on, reads far
// away (served from the plan) and a second Reader's passes give the right
// bytes, and so does the first pass afterwards.
func TestReaderJumpDuringPass(t *testing.T) {
	cmds := windowCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	st := synthStream(t, 1, cmds)
	size := int64(len(want))
	r, _ := st.NewReader(context.Background())
	defer r.Close()
	buf := make([]byte, 100_000)
	check := func(r *Reader, off int64) {
		t.Helper()
		n, err := r.ReadAt(buf, off)
		end := min(off+int64(len(buf)), size)
		if int64(n) != end-off || (err != nil && err != io.EOF) || !bytes.Equal(buf[:n], want[off:end]) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; or bytes differ", len(buf), off, n, err)
		}
	}
	for off := int64(0); off < size/3; off += int64(len(buf)) {
		check(r, off)
		if off == 10*int64(len(buf)) {
			check(r, size-300)   // a jump: from the plan
			check(r, size/2+777) // another
		}
	}
	var wg sync.WaitGroup
	for i := range int64(4) {
		wg.Go(func() {
			r2, _ := st.NewReader(context.Background())
			defer r2.Close()
			readPass(t, r2, want, i*size/4, 128<<10, 2, rand.New(rand.NewPCG(uint64(i), 4)))
		})
	}
	wg.Wait()
}

// TestPlanPublishedProgressively: a read waits only until the plan covers
// its bytes: it is served while the engine is still held back further on.
func TestPlanPublishedProgressively(t *testing.T) {
	cmds := windowCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	st := synthStream(t, 1, cmds)
	replay := st.gen
	hold := make(chan struct{})
	st.gen = func(ctx context.Context, out emitter) error {
		return replay(ctx, &holdAfter{ctx: ctx, next: out, n: len(cmds) - 3, hold: hold})
	}
	r, _ := st.NewReader(context.Background())
	defer r.Close()
	r.direct(nil, 0) // a jump: the plan starts
	off := int64(len(want)) / 2
	v, err := r.direct(make([]byte, 1000), off)
	if err != nil || !bytes.Equal(v.Data, want[off:off+1000]) {
		t.Fatalf("read at %d while the engine is held: %v", off, err)
	}
	close(hold)
	if n := readerSize(t, r); n != int64(len(want)) {
		t.Fatalf("size %d, want %d", n, len(want))
	}
}

// holdAfter passes n commands on, then waits for hold, or for its pass to
// be cancelled.
type holdAfter struct {
	ctx  context.Context
	next emitter
	n    int
	hold chan struct{}
}

func (h *holdAfter) emit(c *Command) error {
	if h.n == 0 {
		select {
		case <-h.hold:
		case <-h.ctx.Done():
			return context.Cause(h.ctx)
		}
	}
	h.n--
	return h.next.emit(c)
}

// TestReaderCloseStopsWork: a Reader closed in the middle of a pass, with
// a plan being built, leaves no goroutine and no block behind.
func TestReaderCloseStopsWork(t *testing.T) {
	cmds := windowCommands()
	want := writeAll(t, synthStream(t, 1, cmds))
	before, blocksBefore := runtime.NumGoroutine(), blocksLive.Load()
	st := synthStream(t, 1, cmds)
	replay := st.gen
	hold := make(chan struct{})
	defer close(hold)
	st.gen = func(ctx context.Context, out emitter) error {
		// Plan builds stop halfway until the test ends: Close must stop them.
		if _, isPlan := out.(*checker).next.(*planBuilder); isPlan {
			out = &holdAfter{ctx: ctx, next: out, n: len(cmds) / 2, hold: hold}
		}
		return replay(ctx, out)
	}
	r, _ := st.NewReader(context.Background())
	buf := make([]byte, blockSize)
	for off := int64(0); off < 3*blockSize; off += blockSize {
		if _, err := r.ReadAt(buf, off); err != nil || !bytes.Equal(buf, want[off:off+blockSize]) {
			t.Fatalf("ReadAt at %d: %v", off, err)
		}
	}
	if _, err := r.ReadAt(buf[:10], 100); err != nil {
		t.Fatal(err) // a jump back: starts the plan
	}
	r.Close()
	deadline := time.Now().Add(30 * time.Second)
	for runtime.NumGoroutine() > before || blocksLive.Load() != blocksBefore {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after Close: %d goroutines (%d before), %d blocks (%d before)\n%s", runtime.NumGoroutine(), before, blocksLive.Load(), blocksBefore, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
