package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"sendfs/sendgen"
)

// streamSet is what one sendfs send writes: the streams of its SUBVOLs one
// after the other, as btrfs send writes them: complete streams, or with
// -e (oneStream) a single stream, every header but the first and every END
// but the last left out.
type streamSet struct {
	streams   []*sendgen.Stream
	oneStream bool
}

// trim is how many bytes stream i loses at its start and at its end.
func (s *streamSet) trim(i int) (head, tail int) {
	if !s.oneStream {
		return 0, 0
	}
	if i > 0 {
		head = sendgen.HeaderLen
	}
	if i < len(s.streams)-1 {
		tail = sendgen.EndLen
	}
	return head, tail
}

// Size is the exact length of everything written.
func (s *streamSet) Size(ctx context.Context) (int64, error) {
	var total int64
	for i, st := range s.streams {
		n, err := st.Size(ctx)
		if err != nil {
			return 0, err
		}
		head, tail := s.trim(i)
		total += n - int64(head+tail)
	}
	return total, nil
}

// WriteTo writes every stream to w; progress, if set, gets the bytes of the
// whole set written so far (approximately, with -e).
func (s *streamSet) WriteTo(ctx context.Context, w io.Writer, progress func(int64)) (int64, error) {
	var total int64
	for i, st := range s.streams {
		head, tail := s.trim(i)
		tw := &trimWriter{w: w, skip: head, hold: tail}
		var report func(int64)
		if progress != nil {
			base := total
			report = func(n int64) { progress(base + n) }
		}
		_, err := st.WriteTo(ctx, tw, report)
		total += tw.n
		if err == nil {
			err = tw.finish()
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// trimWriter passes a stream on to w without its first skip bytes and
// without its last hold bytes, which must be the END command.
type trimWriter struct {
	w    io.Writer
	skip int
	hold int
	held []byte // the last bytes seen, up to hold, not written yet
	n    int64  // bytes written to w
}

func (t *trimWriter) Write(p []byte) (int, error) {
	total := len(p)
	k := min(t.skip, len(p))
	t.skip -= k
	p = p[k:]
	if t.hold > 0 && len(p) >= t.hold {
		// Release what was held, keep p's tail instead.
		if err := t.pass(t.held); err != nil {
			return 0, err
		}
		t.held = append(t.held[:0], p[len(p)-t.hold:]...)
		p = p[:len(p)-t.hold]
	} else if t.hold > 0 {
		all := append(t.held, p...)
		cut := max(len(all)-t.hold, 0)
		if err := t.pass(all[:cut]); err != nil {
			return 0, err
		}
		t.held = append(t.held[:0], all[cut:]...)
		return total, nil
	}
	if err := t.pass(p); err != nil {
		return 0, err
	}
	return total, nil
}

func (t *trimWriter) pass(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	n, err := t.w.Write(p)
	t.n += int64(n)
	return err
}

// finish checks that what was held back is the END command.
func (t *trimWriter) finish() error {
	if t.hold == 0 {
		return nil
	}
	if len(t.held) != sendgen.EndLen || binary.LittleEndian.Uint32(t.held) != 0 || sendgen.Cmd(binary.LittleEndian.Uint16(t.held[4:])) != sendgen.CmdEnd {
		return fmt.Errorf("a stream of the set does not end with END")
	}
	return nil
}
