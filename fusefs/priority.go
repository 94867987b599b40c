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
type priority struct {
	mu      sync.Mutex
	waiting map[string]int // stream cache keys lookups wait for, and how many
	idle    chan struct{}  // closed when no lookup waits; nil while none is made
}

// want registers an urgent wait for key until done is called.
func (p *priority) want(key string) (done func()) {
	p.mu.Lock()
	if p.waiting == nil {
		p.waiting = map[string]int{}
	}
	if len(p.waiting) == 0 {
		p.idle = make(chan struct{})
	}
	p.waiting[key]++
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.waiting[key]--; p.waiting[key] == 0 {
			delete(p.waiting, key)
			if len(p.waiting) == 0 {
				close(p.idle)
			}
		}
	}
}

// maxPause bounds one pause: a background pass goes on after it even if
// lookups still wait, so that no chain of waits (a lookup waiting for
// something a paused pass holds) can stop it for good.
const maxPause = 100 * time.Millisecond

// yield returns at once for a computation of key that a lookup waits for,
// else once no lookup waits for anything, after maxPause, or when ctx ends.
func (p *priority) yield(ctx context.Context, key string) error {
	timeout := time.NewTimer(maxPause)
	defer timeout.Stop()
	for {
		p.mu.Lock()
		idle := p.idle
		free := len(p.waiting) == 0 || p.waiting[key] > 0
		p.mu.Unlock()
		if free {
			return nil
		}
		select {
		case <-idle:
		case <-timeout.C:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}
