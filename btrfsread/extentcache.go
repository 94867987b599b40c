package btrfsread

import (
	"container/list"
	"sync"
	"weak"
)

// extentKey names one decompressed on-disk extent. The filesystem is held
// weakly so that the cache never keeps a closed FS alive.
type extentKey struct {
	fs      weak.Pointer[FS]
	bytenr  uint64
	diskLen uint64
	ram     uint64
	alg     uint8
}

type extentEntry struct {
	key  extentKey
	data []byte
}

// extentCall is one decompression in progress; later askers wait for it.
type extentCall struct {
	done chan struct{}
	data []byte
	err  error
}

// extentCache is a byte-bounded LRU of decompressed extents, safe for
// concurrent use. The send engine reads a 128 KiB compressed extent in
// 48 KiB pieces, often from several workers: each extent is read, verified
// and decompressed once.
type extentCache struct {
	mu       sync.Mutex
	maxBytes int
	used     int
	lru      list.List // of *extentEntry, most recent first
	entries  map[extentKey]*list.Element
	inflight map[extentKey]*extentCall
}

func newExtentCache(maxBytes int) *extentCache {
	return &extentCache{maxBytes: maxBytes, entries: map[extentKey]*list.Element{}, inflight: map[extentKey]*extentCall{}}
}

// decompressedExtents is shared by every open FS (keys name the FS).
var decompressedExtents = newExtentCache(16 << 20)

// get returns the cached bytes for k, or runs compute once for all
// concurrent askers and caches its result. Callers must not modify the
// returned slice.
func (c *extentCache) get(k extentKey, compute func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if el, ok := c.entries[k]; ok {
		c.lru.MoveToFront(el)
		c.mu.Unlock()
		return el.Value.(*extentEntry).data, nil
	}
	if call, ok := c.inflight[k]; ok {
		c.mu.Unlock()
		<-call.done
		return call.data, call.err
	}
	call := &extentCall{done: make(chan struct{})}
	c.inflight[k] = call
	c.mu.Unlock()

	call.data, call.err = compute()

	c.mu.Lock()
	delete(c.inflight, k)
	if call.err == nil {
		c.add(k, call.data)
	}
	c.mu.Unlock()
	close(call.done)
	return call.data, call.err
}

// add stores data and evicts the least recently used entries beyond the
// bound. c.mu is held.
func (c *extentCache) add(k extentKey, data []byte) {
	if len(data) > c.maxBytes {
		return
	}
	c.entries[k] = c.lru.PushFront(&extentEntry{key: k, data: data})
	c.used += len(data)
	for c.used > c.maxBytes {
		old := c.lru.Remove(c.lru.Back()).(*extentEntry)
		delete(c.entries, old.key)
		c.used -= len(old.data)
	}
}
