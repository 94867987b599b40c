package fusefs

import (
	"context"
	"sync"
	"time"
)

// priority lets the sizes a lookup waits for go first: a size computed
// ahead of need (Warm, new snapshots after a refresh) pauses between
// commands while a lookup waits for the size of another stream, so that a
// stat on a cold mount does not share the CPUs with every full stream
// being sized in the background.
//
// No chain of waits through a pause is permanent: a paused pass checks
// again whenever the set of waited-for streams changes, so it goes on as
// soon as a lookup waits for its own stream (the lookup may be waiting for
// it: one computation per stream); a computation someone waits for never
// pauses; and the urgent sizes of a from/ listing take their slots apart
// from the background passes' (computeSize), so they never wait for a
// slot a paused pass holds. maxPause is a second guard.
type priority struct {
	mu      sync.Mutex
	waiting map[string]int // stream cache keys lookups wait for, and how many
	// changed is closed when waiting changes, waking the paused passes;
	// nil while none is paused.
	changed chan struct{}
}

// want registers an urgent wait for key until done is called.
func (p *priority) want(key string) (done func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiting == nil {
		p.waiting = map[string]int{}
	}
	p.waiting[key]++
	p.wake()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.waiting[key]--; p.waiting[key] == 0 {
			delete(p.waiting, key)
		}
		p.wake()
	}
}

// wake tells the paused passes that waiting changed. p.mu is held.
func (p *priority) wake() {
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

// maxPause bounds one pause: a background pass goes on after it even if
// lookups still wait, so that a chain of waits missed above would make
// sizes slow, not hang the mount.
const maxPause = 100 * time.Millisecond

// yield returns at once for a computation of key that a lookup waits for,
// else once no lookup waits for another key, after maxPause, or when ctx
// ends.
func (p *priority) yield(ctx context.Context, key string) error {
	timeout := time.NewTimer(maxPause)
	defer timeout.Stop()
	for {
		p.mu.Lock()
		if len(p.waiting) == 0 || p.waiting[key] > 0 {
			p.mu.Unlock()
			return nil
		}
		if p.changed == nil {
			p.changed = make(chan struct{})
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-timeout.C:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}
