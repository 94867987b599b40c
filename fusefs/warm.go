package fusefs

import (
	"runtime"
	"sync"
	"time"
)

// warmParents is how many parents of each snapshot Warm sizes, closest
// first. Sizing every listed pair would cost O(snapshots²) (10,000 pairs for
// 100 snapshots); the others are sized when their from/ is listed.
const warmParents = 4

// Warm computes the sizes of the streams most likely wanted: every full
// stream, then each snapshot's warmParents closest parents, with at most
// workers at a time, so that lookups find them ready. It returns when done
// or after Close.
func (r *Root) Warm(workers int) {
	start := time.Now()
	pairs := warmPairs(r.catalog().names)
	failed := r.computeSizes(pairs, workers, false)
	if r.ctx.Err() != nil {
		return
	}
	r.log.Info("stream sizes ready", "streams", len(pairs), "failed", failed, "took", time.Since(start).Round(time.Millisecond))
}

// warmPairs orders the streams of snaps to warm: the full streams, then the
// k-th closest listed parent of every snapshot for k = 1..warmParents.
func warmPairs(snaps []*snapshot) []pair {
	var out []pair
	parents := make([][]*snapshot, len(snaps))
	for i, s := range snaps {
		out = append(out, pair{child: s})
		parents[i] = s.byCloseness()
	}
	for rank := range warmParents {
		for i, s := range snaps {
			if rank < len(parents[i]) {
				out = append(out, pair{child: s, parent: parents[i][rank]})
			}
		}
	}
	return out
}

// prefetchFrom starts computing the sizes of the streams a from/ listing
// shows, in parallel and as urgent: the READDIRPLUS that follows looks them
// up one by one.
func (r *Root) prefetchFrom(s *snapshot) {
	pairs := make([]pair, 0, len(s.related))
	for _, p := range s.related {
		pairs = append(pairs, pair{child: s, parent: p})
	}
	go r.computeSizes(pairs, runtime.NumCPU(), true)
}

// computeSizes sizes pairs on workers goroutines and returns how many
// failed (each failure is logged). Unless urgent, they pause while a
// lookup waits for another size.
func (r *Root) computeSizes(pairs []pair, workers int, urgent bool) int {
	jobs := make(chan pair)
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for p := range jobs {
				if err := r.computeSize(p, urgent); err != nil && r.ctx.Err() == nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		})
	}
	for _, p := range pairs {
		if r.ctx.Err() != nil {
			break
		}
		jobs <- p
	}
	close(jobs)
	wg.Wait()
	return failed
}

// computeSize sizes one pair, holding one of the root's slots so that
// sizing never runs on more goroutines than there are CPUs per kind
// (background, urgent), however many from/ listings start it at once. An urgent pair counts as waited for
// while it waits for its slot too, so that background passes pause for it;
// urgent pairs have slots of their own, since a background pass holding
// one pauses.
func (r *Root) computeSize(p pair, urgent bool) error {
	s, err := r.openPair(p)
	if err == nil {
		slots := r.slots
		if urgent {
			slots = r.urgentSlots
			defer r.sizes.prio.want(s.CacheKey())()
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
		_, err = r.sizes.size(r.ctx, s, false) // urgency registered above
	}
	if err != nil && r.ctx.Err() == nil {
		r.logSizeFailure(p.label(), err)
	}
	return err
}
