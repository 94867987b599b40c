package btrfsread

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func cacheNode(logical uint64, size int) *node { return &node{logical: logical, b: make([]byte, size)} }

func TestBlockCacheBound(t *testing.T) {
	c := newBlockCache(3 * 4096)
	load := func(l uint64) func() (*node, error) { return func() (*node, error) { return cacheNode(l, 4096), nil } }
	for _, l := range []uint64{1, 2, 3} {
		must(t, errOnly(c.getOrLoad(l, load(l))))
	}
	must(t, errOnly(c.getOrLoad(1, load(1)))) // 1 is now the most recent
	must(t, errOnly(c.getOrLoad(4, load(4)))) // evicts 2, the least recent
	if c.used != 3*4096 || len(c.entries) != 3 {
		t.Fatalf("cache holds %d bytes in %d entries", c.used, len(c.entries))
	}
	if _, ok := c.entries[2]; ok {
		t.Error("least recently used block was kept")
	}
	if _, ok := c.entries[1]; !ok {
		t.Error("recently used block was evicted")
	}
	c.put(cacheNode(4, 4096)) // replacing keeps the byte count right
	if c.used != 3*4096 {
		t.Errorf("after replace: %d bytes", c.used)
	}
}

func errOnly(_ *node, err error) error { return err }

func TestBlockCacheDedup(t *testing.T) {
	c := newBlockCache(1 << 20)
	var loads atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			n, err := c.getOrLoad(7, func() (*node, error) {
				loads.Add(1)
				<-release
				return cacheNode(7, 4096), nil
			})
			if err != nil || n.logical != 7 {
				t.Errorf("getOrLoad: %v %v", n, err)
			}
		})
	}
	close(release)
	wg.Wait()
	if loads.Load() != 1 {
		t.Errorf("%d loads for one block", loads.Load())
	}

	boom := errors.New("boom")
	if _, err := c.getOrLoad(8, func() (*node, error) { return nil, boom }); err != boom {
		t.Fatal(err)
	}
	if n, err := c.getOrLoad(8, func() (*node, error) { return cacheNode(8, 4096), nil }); err != nil || n == nil {
		t.Errorf("an error was cached: %v", err)
	}
}
