package fusefs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"sendfs/internal/lru"
	"sendfs/sendgen"
)

// sizeCache remembers stream lengths by cache key: in an internal/lru
// cache for the mount, and in one small file per key under dir so that the
// next mount knows them at once. Concurrent requests for one key share a
// single computation, which runs under the cache's own context so that one
// interrupted caller does not cancel the others.
type sizeCache struct {
	ctx   context.Context // the mount's lifetime
	dir   string          // "" keeps sizes in memory only
	log   *slog.Logger
	known *lru.Cache[string, int64]
	prio  priority

	mu      sync.Mutex
	diskErr bool // a disk write failed already (logged once)
}

// A size in memory costs its key (about 300 bytes), the size and the
// cache's bookkeeping: sizeEntryBytes each, so sizeCacheBytes keeps 32,768
// streams (every pair of 180 snapshots). Past that the least recently used
// are dropped: with a cache dir they are read back from disk, without one
// they are counted again.
const (
	sizeEntryBytes = 512
	sizeCacheBytes = 16 << 20
)

func newSizeCache(ctx context.Context, dir string, log *slog.Logger) *sizeCache {
	entry := func(int64) int64 { return sizeEntryBytes }
	return &sizeCache{ctx: ctx, dir: dir, log: log, known: lru.New[string](sizeCacheBytes, entry)}
}

// size returns the length of s, computing it at most once per key at a
// time. The computation runs on a goroutine of its own, so that a caller
// whose ctx ends stops waiting without cancelling it for the others. An
// urgent caller (a lookup) makes the computations nobody waits for pause
// until it has its size.
func (c *sizeCache) size(ctx context.Context, s pairStream, urgent bool) (int64, error) {
	key := s.CacheKey()
	get := func() (int64, error) {
		return c.known.Get(key, func() (int64, error) { return c.compute(key, s) })
	}
	if c.known.Contains(key) {
		return get() // known: no computation to wait for
	}
	if urgent {
		defer c.prio.want(key)()
	}
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := get()
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		return r.n, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// compute reads the size of key from disk, or counts it and stores it.
func (c *sizeCache) compute(key string, s pairStream) (int64, error) {
	if n, ok := c.load(key); ok {
		return n, nil
	}
	pause := func(ctx context.Context) error { return c.prio.yield(ctx, key) }
	n, err := countStream(sendgen.WithPause(c.ctx, pause), s)
	if err == nil {
		c.store(key, n)
	}
	return n, err
}

// replace records n as the size under key, in memory and on disk: the
// bytes generated under key had that length, whatever was cached before.
func (c *sizeCache) replace(key string, n int64) {
	c.known.Put(key, n)
	c.store(key, n)
}

// countStream runs s.Size on this goroutine of our own, where a panic
// (a bug in the engine) would end the process: it becomes an error instead,
// and the mount keeps serving the other streams.
func countStream(ctx context.Context, s pairStream) (n int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error computing the size: %v", r)
		}
	}()
	return s.Size(ctx)
}

// File format: a header line, the key (so that a hash collision or a
// foreign file is detected), the size.
const sizeFileHeader = "sendfs stream size v1"

func (c *sizeCache) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(c.dir, hex.EncodeToString(sum[:16]))
}

func (c *sizeCache) load(key string) (int64, bool) {
	if c.dir == "" {
		return 0, false
	}
	b, err := os.ReadFile(c.path(key))
	if err != nil {
		return 0, false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) != 4 || lines[0] != sizeFileHeader || lines[1] != key || lines[3] != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(lines[2], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// store writes the size atomically (temporary file, then rename); a cache
// that cannot be written only costs recomputation, so it is logged once.
func (c *sizeCache) store(key string, n int64) {
	if c.dir == "" {
		return
	}
	err := writeFileAtomic(c.path(key), fmt.Sprintf("%s\n%s\n%d\n", sizeFileHeader, key, n))
	if err == nil {
		return
	}
	c.mu.Lock()
	first := !c.diskErr
	c.diskErr = true
	c.mu.Unlock()
	if first {
		c.log.Warn("size cache not written; sizes are kept in memory only", "dir", c.dir, "err", err)
	}
}

func writeFileAtomic(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
