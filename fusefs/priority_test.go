package fusefs

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestPriority: a computation nobody waits for yields while a lookup waits
// for another key, and goes on when that lookup is done or after maxPause;
// a computation a lookup waits for never yields; a yield ends with its
// context.
func TestPriority(t *testing.T) {
	var p priority
	if err := p.yield(context.Background(), "bg"); err != nil {
		t.Fatalf("yield with no lookup waiting: %v", err)
	}
	done := p.want("fg")
	if err := p.yield(context.Background(), "fg"); err != nil {
		t.Fatalf("the computation a lookup waits for yielded: %v", err)
	}
	resumed := make(chan error)
	go func() { resumed <- p.yield(context.Background(), "bg") }()
	select {
	case err := <-resumed:
		t.Fatalf("background computation went on while a lookup waited (%v)", err)
	case <-time.After(maxPause / 2):
	}
	done()
	if err := <-resumed; err != nil {
		t.Fatalf("background computation after the lookup: %v", err)
	}

	defer p.want("fg")()
	start := time.Now()
	if err := p.yield(context.Background(), "bg"); err != nil || time.Since(start) < maxPause {
		t.Errorf("a pause ended after %v (%v), want maxPause", time.Since(start), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.yield(ctx, "bg"); !errors.Is(err, context.Canceled) {
		t.Errorf("yield under a cancelled context: %v", err)
	}
}
