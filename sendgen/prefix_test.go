package sendgen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

func TestReadPrefixAt(t *testing.T) {
	s := synthStream(t, 1, sampleCommands(maxWriteV1))
	whole := writeAll(t, s)
	for _, r := range []struct{ off, n int64 }{
		{0, 10}, {0, 16 << 10}, {17, 1000}, {int64(len(whole)) - 5, 5}, {int64(len(whole)) - 5, 50}, {int64(len(whole)), 10},
	} {
		if r.off+r.n > PrefixLimit {
			continue
		}
		p := make([]byte, r.n)
		n, err := s.ReadPrefixAt(context.Background(), p, r.off)
		wantN := max(0, min(r.n, int64(len(whole))-r.off))
		if int64(n) != wantN {
			t.Errorf("ReadPrefixAt(%d, %d) read %d bytes, want %d", r.off, r.n, n, wantN)
		}
		if wantN < r.n && !errors.Is(err, io.EOF) {
			t.Errorf("ReadPrefixAt(%d, %d) past the end: error %v, want io.EOF", r.off, r.n, err)
		}
		if wantN == r.n && err != nil {
			t.Errorf("ReadPrefixAt(%d, %d): %v", r.off, r.n, err)
		}
		if !bytes.Equal(p[:n], whole[r.off:r.off+int64(n)]) {
			t.Errorf("ReadPrefixAt(%d, %d) differs from the stream's bytes", r.off, r.n)
		}
	}
	if _, err := s.ReadPrefixAt(context.Background(), make([]byte, 10), PrefixLimit); err == nil {
		t.Error("a read past PrefixLimit must be refused")
	}
}
