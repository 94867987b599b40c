package btrfsread

import "sendfs/internal/lru"

// The reader's two caches, both byte-bounded and compute-once (internal/lru).
const (
	// nodeCacheBytes bounds the tree blocks kept: 2048 blocks of 16 KiB. A
	// walk keeps its own path, so the cache only has to hold the upper
	// levels of the trees in use and recently read leaves. Every view of a
	// live filesystem shares it: a block is checked against what its parent
	// promises whenever it is used.
	nodeCacheBytes = 32 << 20
	// extentCacheBytes bounds the decompressed extents kept. The engine
	// reads a 128 KiB compressed extent in 48 KiB pieces, often from several
	// workers: each is read, verified and decompressed once.
	extentCacheBytes = 16 << 20
)

func newNodeCache(maxBytes int64) *lru.Cache[uint64, *node] {
	return lru.New[uint64](maxBytes, func(n *node) int64 { return int64(len(n.b)) })
}

// extentKey names one decompressed on-disk extent of one view: a newer
// commit may reuse the address, so views do not share this cache.
type extentKey struct {
	bytenr  uint64
	diskLen uint64
	ram     uint64
	alg     uint8
}

func newExtentCache() *lru.Cache[extentKey, []byte] {
	return lru.New[extentKey](extentCacheBytes, func(b []byte) int64 { return int64(len(b)) })
}
