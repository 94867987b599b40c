package fusefs

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"sendfs/btrfsread"
	"sendfs/sendgen"
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

// pausingStream is a size pass that pauses once, as an engine pass does at
// its cancellation checks, after step is closed (at once when nil).
type pausingStream struct {
	fakeStream
	step chan struct{}
}

func (s *pausingStream) Size(ctx context.Context) (int64, error) {
	if s.step != nil {
		<-s.step
	}
	if err := sendgen.Pause(ctx); err != nil {
		return 0, err
	}
	return s.fakeStream.Size(ctx)
}

// pausingRoot is a Root over testSubvols whose streams are pausingStreams;
// steps gives the step channel of a child's full stream by id.
func pausingRoot(steps map[uint64]chan struct{}) *Root {
	sized := new(atomic.Int64)
	open := func(child, parent *btrfsread.Subvolume) (pairStream, error) {
		key := fmt.Sprint(child.ID)
		if parent != nil {
			key += fmt.Sprint("-", parent.ID)
		}
		return &pausingStream{fakeStream: fakeStream{key: key, size: streamSize(child, parent), sized: sized}, step: steps[child.ID]}, nil
	}
	return newRoot(testSubvols(), Config{}, open)
}

// fullPair is the full stream of the snapshot with id in r.
func fullPair(r *Root, id uint64) pair { return pair{child: r.catalog().byID[id]} }

// TestLookupWakesPausedPass: the chain behind a lookup that CI once saw
// hang. A background pass of stream A pauses because a lookup waits for
// stream B; a lookup of A then waits for that pass (one computation per
// stream); the lookup of B ends. The pass of A must go on then, as a pass a
// lookup waits for, without a pause having to run out its bound: time in
// the bubble moves only when every goroutine is blocked, so any time spent
// means a pause ran out.
func TestLookupWakesPausedPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := pausingRoot(nil)
		defer r.Close()
		a := fullPair(r, 257)
		doneB := r.sizes.prio.want("258") // a lookup of B, in progress
		background := make(chan error)
		go func() { background <- r.computeSize(a, false) }()
		synctest.Wait() // the pass of A is paused
		start := time.Now()
		lookup := make(chan syscall.Errno)
		go func() {
			_, errno := r.newStreamFile(context.Background(), a.child, nil)
			lookup <- errno
		}()
		synctest.Wait() // the lookup of A waits for that pass
		doneB()
		if errno := <-lookup; errno != 0 {
			t.Errorf("lookup of A: %v", errno)
		}
		if err := <-background; err != nil {
			t.Errorf("background size of A: %v", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("the lookup of A was answered after a pause of %v ran out, not when its pass was woken", d)
		}
	})
}

// TestUrgentSizeNotBehindPausedSlots: a from/ listing's size (urgent) must
// not wait for a slot that background passes hold while they pause for it.
func TestUrgentSizeNotBehindPausedSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		step := make(chan struct{})
		r := pausingRoot(map[uint64]chan struct{}{257: step})
		defer r.Close()
		r.slots = make(chan struct{}, 1) // one background pass fills them
		start := time.Now()
		background := make(chan error)
		go func() { background <- r.computeSize(fullPair(r, 257), false) }()
		synctest.Wait() // the background pass holds the slot
		urgent := make(chan error)
		go func() { urgent <- r.computeSize(fullPair(r, 258), true) }()
		synctest.Wait()
		close(step) // the background pass reaches a pause
		if err := <-urgent; err != nil {
			t.Errorf("urgent size: %v", err)
		}
		if err := <-background; err != nil {
			t.Errorf("background size: %v", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("the sizes were done after a pause of %v ran out", d)
		}
	})
}
