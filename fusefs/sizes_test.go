package fusefs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
)

// blockingStream is a stream whose Size waits for release.
type blockingStream struct {
	fakeStream
	release chan struct{}
}

func (s *blockingStream) Size(ctx context.Context) (int64, error) {
	<-s.release
	if err := ctx.Err(); err != nil {
		return 0, err // computed under a caller's context that ended
	}
	return s.fakeStream.Size(ctx)
}

// TestSizeCache: concurrent callers of one key share one computation, which
// a caller that gives up does not cancel; a size is kept on disk for the
// next cache on the same directory; replace wins over what was computed, in
// memory and on disk; a failed computation is not kept.
func TestSizeCache(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := newSizeCache(context.Background(), dir, log)
	s := &blockingStream{fakeStream: fakeStream{key: "k1", size: 1234, sized: &atomic.Int64{}}, release: make(chan struct{})}

	gaveUp, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.size(gaveUp, s, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("size with a cancelled context: %v", err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if n, err := c.size(context.Background(), s, false); n != 1234 || err != nil {
				t.Errorf("size = %d, %v; want 1234", n, err)
			}
		})
	}
	close(s.release)
	wg.Wait()
	if n := s.sized.Load(); n != 1 {
		t.Errorf("9 callers computed the size %d times, want once", n)
	}

	c2 := newSizeCache(context.Background(), dir, log)
	if n, err := c2.size(context.Background(), s, false); n != 1234 || err != nil || s.sized.Load() != 1 {
		t.Errorf("a new cache on the same dir: %d, %v after %d computations; want 1234 from disk", n, err, s.sized.Load())
	}
	c2.replace("k1", 999)
	if n, _ := c2.size(context.Background(), s, false); n != 999 {
		t.Errorf("after replace: %d, want 999", n)
	}
	if n, _ := newSizeCache(context.Background(), dir, log).size(context.Background(), s, false); n != 999 || s.sized.Load() != 1 {
		t.Errorf("replaced size on disk: %d after %d computations, want 999", n, s.sized.Load())
	}

	bad := &fakeStream{key: "k2", size: 5, sizeErr: errors.New("boom"), sized: &atomic.Int64{}}
	for range 2 {
		if _, err := c.size(context.Background(), bad, false); err == nil {
			t.Error("a failing size succeeded")
		}
	}
	if bad.sized.Load() != 2 {
		t.Errorf("a failed size was computed %d times by 2 calls: it was kept", bad.sized.Load())
	}
}
