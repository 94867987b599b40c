package btrfsread

import (
	"container/list"
	"sync"
)

// defaultCacheBytes bounds the node cache: 4096 blocks of 16 KiB. A walk
// keeps its own path, so the cache only has to hold the upper levels of the
// trees in use and recently read leaves.
const defaultCacheBytes = 64 << 20

// blockCache is a byte-bounded LRU of validated tree blocks keyed by logical
// address, safe for concurrent use. Concurrent loads of one block are
// deduplicated: the first caller reads, the others wait for its result.
type blockCache struct {
	mu      sync.Mutex
	max     int64
	used    int64
	lru     list.List // of *node, most recently used first
	entries map[uint64]*list.Element
	loading map[uint64]*pendingLoad
}

type pendingLoad struct {
	done chan struct{}
	n    *node
	err  error
}

func newBlockCache(maxBytes int64) *blockCache {
	return &blockCache{
		max:     maxBytes,
		entries: make(map[uint64]*list.Element),
		loading: make(map[uint64]*pendingLoad),
	}
}

// getOrLoad returns the cached block at logical or calls load once for all
// concurrent callers. Errors are not cached.
func (c *blockCache) getOrLoad(logical uint64, load func() (*node, error)) (*node, error) {
	c.mu.Lock()
	if e, ok := c.entries[logical]; ok {
		c.lru.MoveToFront(e)
		c.mu.Unlock()
		return e.Value.(*node), nil
	}
	if p, ok := c.loading[logical]; ok {
		c.mu.Unlock()
		<-p.done
		return p.n, p.err
	}
	p := &pendingLoad{done: make(chan struct{})}
	c.loading[logical] = p
	c.mu.Unlock()

	p.n, p.err = load()

	c.mu.Lock()
	delete(c.loading, logical)
	if p.err == nil {
		c.insertLocked(p.n)
	}
	c.mu.Unlock()
	close(p.done)
	return p.n, p.err
}

// put stores n, replacing any cached block at the same address.
func (c *blockCache) put(n *node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.insertLocked(n)
}

func (c *blockCache) insertLocked(n *node) {
	if e, ok := c.entries[n.logical]; ok {
		c.removeLocked(e)
	}
	c.entries[n.logical] = c.lru.PushFront(n)
	c.used += int64(len(n.b))
	for c.used > c.max && c.lru.Len() > 1 {
		c.removeLocked(c.lru.Back())
	}
}

func (c *blockCache) removeLocked(e *list.Element) {
	n := c.lru.Remove(e).(*node)
	delete(c.entries, n.logical)
	c.used -= int64(len(n.b))
}
