package sendgen

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"sendfs/btrfsread"
)

// failWriter accepts limit bytes, then fails.
type failWriter struct {
	limit int
	buf   bytes.Buffer
}

var errDiskFull = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) > w.limit {
		n := w.limit - w.buf.Len()
		w.buf.Write(p[:n])
		return n, errDiskFull
	}
	return w.buf.Write(p)
}

func TestWriteToErrors(t *testing.T) {
	cmds := sampleCommands(1000)
	errBadBlock := errors.New("bad block")

	t.Run("data read", func(t *testing.T) {
		s := synthStream(t, 1, cmds)
		s.read = func(ref *DataRef, p []byte) error {
			if ref.Ino == 261 && ref.FileOffset >= 2000 {
				return errBadBlock
			}
			return patternRead(ref, p)
		}
		var buf bytes.Buffer
		n, err := s.WriteTo(context.Background(), &buf, nil)
		if !errors.Is(err, errBadBlock) || n != int64(buf.Len()) {
			t.Fatalf("WriteTo = %d, %v; wrote %d", n, err, buf.Len())
		}
	})
	t.Run("writer", func(t *testing.T) {
		w := &failWriter{limit: 5000}
		n, err := synthStream(t, 1, cmds).WriteTo(context.Background(), w, nil)
		if !errors.Is(err, errDiskFull) || n != 5000 {
			t.Fatalf("WriteTo = %d, %v", n, err)
		}
	})
	t.Run("engine", func(t *testing.T) {
		s := synthStream(t, 1, cmds)
		replay := s.gen
		s.gen = func(ctx context.Context, out emitter) error {
			if err := replay(ctx, out); err != nil {
				return err
			}
			return errBadBlock
		}
		if _, err := s.WriteTo(context.Background(), &bytes.Buffer{}, nil); !errors.Is(err, errBadBlock) {
			t.Fatalf("WriteTo error %v", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		progress := func(int64) { cancel() }
		if _, err := synthStream(t, 1, cmds).WriteTo(ctx, &bytes.Buffer{}, progress); !errors.Is(err, context.Canceled) {
			t.Fatalf("WriteTo error %v", err)
		}
	})
}

func TestWriteToProgress(t *testing.T) {
	var last int64
	var calls int
	var buf bytes.Buffer
	n, err := synthStream(t, 1, sampleCommands(1000)).WriteTo(context.Background(), &buf, func(p int64) {
		if p <= last {
			t.Errorf("progress went from %d to %d", last, p)
		}
		last = p
		calls++
	})
	if err != nil || last != n || calls < 2 {
		t.Fatalf("WriteTo = %d, %v; last progress %d after %d calls", n, err, last, calls)
	}
}

// TestWriteResume: a pass that fails midway and a pass that resumes it
// (writeFrom, as WriteTo runs them after a refresh) write the stream once,
// byte for byte; a resuming pass that generates other commands, or other
// command boundaries, fails instead of joining two streams.
func TestWriteResume(t *testing.T) {
	cmds := sampleCommands(1000)
	var want bytes.Buffer
	if _, err := synthStream(t, 1, cmds).WriteTo(context.Background(), &want, nil); err != nil {
		t.Fatal(err)
	}
	errMoved := &btrfsread.CorruptError{Logical: 0x1000, Reason: "moved"}
	for _, stop := range []int{1, 2, 7, len(cmds) / 2, len(cmds) - 1} {
		s := synthStream(t, 1, cmds)
		replay := s.gen
		s.gen = func(ctx context.Context, out emitter) error {
			return replay(ctx, &stopAfter{next: out, n: stop, err: errMoved})
		}
		var got bytes.Buffer
		at, err := s.writeFrom(context.Background(), &got, resumePoint{}, nil)
		if !errors.Is(err, errMoved) || at.off != int64(got.Len()) {
			t.Fatalf("stop %d: first pass = %+v, %v; wrote %d", stop, at, err, got.Len())
		}
		s.gen = replay
		if at, err = s.writeFrom(context.Background(), &got, at, nil); err != nil || at.off != int64(want.Len()) {
			t.Fatalf("stop %d: resumed pass = %+v, %v", stop, at, err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("stop %d: resumed stream differs from the stream written at once", stop)
		}

		// The resuming pass sees other commands (the snapshot changed).
		other := slices.Clone(cmds)
		other[0].Attrs = append(slices.Clone(other[0].Attrs), 0)
		s2 := synthStream(t, 1, other)
		s.gen = func(ctx context.Context, out emitter) error {
			return replay(ctx, &stopAfter{next: out, n: stop, err: errMoved})
		}
		var w bytes.Buffer
		at, _ = s.writeFrom(context.Background(), &w, resumePoint{}, nil)
		if at.off <= int64(streamHeaderLen) {
			continue // nothing but the header written: any pass may follow
		}
		if _, err := s2.writeFrom(context.Background(), &w, at, nil); !errors.Is(err, errResumeMismatch) {
			t.Fatalf("stop %d: resuming with other commands: %v, want errResumeMismatch", stop, err)
		}
	}
}

// stopAfter passes n commands on, then fails with err.
type stopAfter struct {
	next emitter
	n    int
	err  error
}

func (s *stopAfter) emit(c *Command) error {
	if s.n == 0 {
		return s.err
	}
	s.n--
	return s.next.emit(c)
}
