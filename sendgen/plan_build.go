package sendgen

import (
	"context"
	"errors"
	"math"
	"sync"
)

// A plan is built by an engine pass of its own, which reads no file data
// and so runs at counting speed, well ahead of any reader of the data. It is
// published in parts as it grows: a read waits only until the plan covers
// its bytes, never for the whole stream, so a sequential reader starts at
// once and a reader that jumps waits only for the engine to get there. The
// build is shared by every Reader of the stream; it stops when the last
// Reader attached to it closes before it is complete, and the complete plan
// stays with the Stream.

// planBuild is a plan being built, or built.
type planBuild struct {
	cancel context.CancelCauseFunc
	users  int // Readers attached, guarded by the Stream's planMu

	mu    sync.Mutex
	cur   *plan         // the part built so far; whole once complete
	err   error         // why the build failed
	grown chan struct{} // closed when cur or err changes
}

// errNoReader stops a build that no Reader needs any more.
var errNoReader = errors.New("sendgen: every reader of the stream was closed")

// attachBuild returns the stream's plan build with one more user: the
// plan kept in the cache directory when there is one, else a build started
// under ctx when there is none or the last one failed.
func (s *Stream) attachBuild(ctx context.Context) *planBuild {
	s.planMu.Lock()
	defer s.planMu.Unlock()
	if b := s.cachedBuild(ctx); b != nil && b.failure() == nil {
		b.users++
		return b
	}
	b := &planBuild{users: 1, cur: &plan{enc: s.enc, read: s.read}, grown: make(chan struct{})}
	bctx, cancel := context.WithCancelCause(ctx)
	b.cancel = cancel
	s.build = b
	go s.runBuild(ctx, bctx, b)
	return b
}

// cachedBuild returns the stream's build, or when there is none (or it
// failed) and the plan cache has the stream's plan, a build complete with
// it. s.planMu is held.
func (s *Stream) cachedBuild(ctx context.Context) *planBuild {
	if b := s.build; s.plans == nil || b != nil && b.failure() == nil {
		return b
	}
	if p := s.plans.load(ctx, s); p != nil {
		s.build = &planBuild{cancel: func(error) {}, cur: p, grown: make(chan struct{})}
	}
	return s.build
}

// detachBuild undoes attachBuild: the last user of a build that is not
// complete stops it.
func (s *Stream) detachBuild(b *planBuild) {
	s.planMu.Lock()
	defer s.planMu.Unlock()
	if b.users--; b.users > 0 || b.complete() {
		return
	}
	b.cancel(errNoReader)
	if s.build == b {
		s.build = nil
	}
}

// runBuild runs the engine into a planBuilder that publishes into b,
// under ctx, which b.cancel cancels; a plan kept in the cache directory is
// read under outer, which outlives the build.
func (s *Stream) runBuild(outer, ctx context.Context, b *planBuild) {
	defer b.cancel(nil)
	var pb *planBuilder
	err := s.withRefresh(func() error {
		// A pass on a newer commit starts again from the start; b
		// keeps the bigger part until the new pass gets further.
		pb = newPlanBuilder(s.enc, s.read, b)
		return s.runChecked(ctx, pb)
	})
	if err != nil {
		b.end(nil, err)
		return
	}
	p := pb.finish()
	if err := s.settleSize(p.size); err != nil {
		b.end(nil, err)
		return
	}
	b.end(p, nil)
	if s.plans != nil {
		// Served from the file from now on: its memory is a few pages.
		if kept := s.plans.keep(outer, s, p); kept != nil {
			b.mu.Lock()
			b.cur = kept
			b.mu.Unlock()
		}
	}
}

// grow publishes a bigger part of the plan.
func (b *planBuild) grow(p *plan) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.size > b.cur.size {
		b.cur = p
		close(b.grown)
		b.grown = make(chan struct{})
	}
}

// end publishes the whole plan, or the build's failure.
func (b *planBuild) end(p *plan, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.err = err
	} else {
		b.cur = p
	}
	close(b.grown)
	b.grown = make(chan struct{})
}

func (b *planBuild) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *planBuild) complete() bool {
	return b.plan().whole
}

// plan is the part built so far, or the whole plan.
func (b *planBuild) plan() *plan {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur
}

// covering waits until the plan covers the stream up to end, or is whole
// (a stream that ends before end), and returns it.
func (b *planBuild) covering(end int64) (*plan, error) {
	for {
		b.mu.Lock()
		p, err, grown := b.cur, b.err, b.grown
		b.mu.Unlock()
		switch {
		case err != nil:
			return nil, err
		case p.whole || p.size >= end:
			return p, nil
		}
		<-grown
	}
}

// planWhole reports whether the stream's whole plan is built, or kept in
// the cache directory.
func (s *Stream) planWhole(ctx context.Context) bool {
	s.planMu.Lock()
	defer s.planMu.Unlock()
	b := s.cachedBuild(ctx)
	return b != nil && b.complete()
}

// getPlan returns the stream's whole plan, building it if needed.
func (s *Stream) getPlan(ctx context.Context) (*plan, error) {
	b := s.attachBuild(ctx)
	defer s.detachBuild(b)
	return b.covering(math.MaxInt64)
}
