package btrfsread

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"
)

func TestExtentCacheBoundAndDedup(t *testing.T) {
	c := newExtentCache(10)
	fs := &FS{}
	key := func(n uint64) extentKey { return extentKey{fs: weak.Make(fs), bytenr: n} }
	var computes atomic.Int32
	slow := make(chan struct{})
	compute := func() ([]byte, error) {
		computes.Add(1)
		<-slow
		return []byte("abcd"), nil
	}
	// Eight concurrent askers of one key: one computation.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if b, err := c.get(key(1), compute); err != nil || string(b) != "abcd" {
				t.Errorf("get: %q %v", b, err)
			}
		})
	}
	for c.inflightCount() == 0 { // until the first asker is computing
		time.Sleep(time.Millisecond)
	}
	close(slow)
	wg.Wait()
	if n := computes.Load(); n != 1 {
		t.Fatalf("%d computations for one key", n)
	}
	// 4 bytes each, bound 10: the third entry evicts the least recent.
	c.get(key(2), compute)
	c.get(key(1), compute) // now key 2 is the least recent
	c.get(key(3), compute)
	if c.used > 10 || c.has(key(2)) || !c.has(key(1)) || !c.has(key(3)) {
		t.Fatalf("used %d, has 1/2/3: %v %v %v", c.used, c.has(key(1)), c.has(key(2)), c.has(key(3)))
	}
	// Errors are returned, not cached.
	bad := errors.New("bad copy")
	if _, err := c.get(key(4), func() ([]byte, error) { return nil, bad }); err != bad {
		t.Fatalf("error: %v", err)
	}
	if b, err := c.get(key(4), compute); err != nil || string(b) != "abcd" {
		t.Fatalf("after an error: %q %v", b, err)
	}
}

func (c *extentCache) inflightCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inflight)
}

func (c *extentCache) has(k extentKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[k]
	return ok
}
