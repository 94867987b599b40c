// Package lru is a byte-bounded, compute-once LRU cache, safe for concurrent
// use: the first caller of a missing key computes its value while later
// callers of the same key wait for that one result; values that do not fit
// the bound are returned but not kept; errors are never cached. sendfs
// keeps validated tree blocks, decompressed extents, data backrefs and
// stream sizes in it.
package lru

import (
	"container/list"
	"sync"
)

// Cache maps keys to values of a known size, keeping the most recently used
// ones within a byte bound.
type Cache[K comparable, V any] struct {
	max     int64
	size    func(V) int64
	dropped func(V) // nil, or called with each value the cache stops holding

	mu      sync.Mutex
	used    int64
	order   list.List // of *entry[K, V], most recently used first
	entries map[K]*list.Element
	loading map[K]*call[V]
}

type entry[K comparable, V any] struct {
	key K
	val V
}

// call is one computation in progress; callers of the same key wait on done.
type call[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// New returns a cache keeping at most maxBytes, as size measures its values.
func New[K comparable, V any](maxBytes int64, size func(V) int64) *Cache[K, V] {
	return NewDropping[K](maxBytes, size, nil)
}

// NewDropping is New with dropped called, under the cache's lock, with each
// value the cache held and no longer holds (evicted or replaced), so that
// its owner can recycle it. A value never kept (over the bound) is not
// dropped.
func NewDropping[K comparable, V any](maxBytes int64, size func(V) int64, dropped func(V)) *Cache[K, V] {
	return &Cache[K, V]{max: maxBytes, size: size, dropped: dropped, entries: map[K]*list.Element{}, loading: map[K]*call[V]{}}
}

// Get returns the value of k, calling compute once for all concurrent
// callers when it is not cached.
func (c *Cache[K, V]) Get(k K, compute func() (V, error)) (V, error) {
	c.mu.Lock()
	if e, ok := c.entries[k]; ok {
		c.order.MoveToFront(e)
		c.mu.Unlock()
		return e.Value.(*entry[K, V]).val, nil
	}
	if p, ok := c.loading[k]; ok {
		c.mu.Unlock()
		<-p.done
		return p.val, p.err
	}
	p := &call[V]{done: make(chan struct{})}
	c.loading[k] = p
	c.mu.Unlock()

	p.val, p.err = compute()

	c.mu.Lock()
	delete(c.loading, k)
	if p.err == nil {
		c.putLocked(k, p.val)
	}
	c.mu.Unlock()
	close(p.done)
	return p.val, p.err
}

// Put stores v under k, replacing what k held.
func (c *Cache[K, V]) Put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, v)
}

// Contains reports whether k is cached (without making it recently used).
func (c *Cache[K, V]) Contains(k K) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[k]
	return ok
}

// Len is the number of cached values.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Used is the number of bytes the cached values take.
func (c *Cache[K, V]) Used() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

func (c *Cache[K, V]) putLocked(k K, v V) {
	if e, ok := c.entries[k]; ok {
		c.removeLocked(e)
	}
	n := c.size(v)
	if n > c.max {
		return
	}
	c.entries[k] = c.order.PushFront(&entry[K, V]{k, v})
	c.used += n
	for c.used > c.max {
		c.removeLocked(c.order.Back())
	}
}

func (c *Cache[K, V]) removeLocked(e *list.Element) {
	old := c.order.Remove(e).(*entry[K, V])
	delete(c.entries, old.key)
	c.used -= c.size(old.val)
	if c.dropped != nil {
		c.dropped(old.val)
	}
}
