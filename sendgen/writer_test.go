package sendgen

import (
	"bytes"
	"context"
	"errors"
	"testing"
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
