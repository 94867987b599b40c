package lru

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func bytesLen(b []byte) int64 { return int64(len(b)) }

func value(s string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(s), nil } }

func TestBound(t *testing.T) {
	c := New[int](10, bytesLen)
	for _, k := range []int{1, 2} {
		if _, err := c.Get(k, value("abcd")); err != nil {
			t.Fatal(err)
		}
	}
	c.Get(1, value("xxxx")) // cached: 1 is now the most recent, its value unchanged
	c.Get(3, value("abcd")) // 12 bytes > 10: evicts 2, the least recent
	if c.Used() != 8 || c.Len() != 2 || c.Contains(2) || !c.Contains(1) || !c.Contains(3) {
		t.Fatalf("used %d, has 1/2/3: %v %v %v", c.Used(), c.Contains(1), c.Contains(2), c.Contains(3))
	}
	if b, _ := c.Get(1, value("xxxx")); string(b) != "abcd" {
		t.Errorf("key 1 computed again: %q", b)
	}
	c.Put(3, []byte("ab")) // replacing keeps the byte count right
	if c.Used() != 6 {
		t.Errorf("after replace: %d bytes", c.Used())
	}
	if b, err := c.Get(4, value("0123456789ab")); err != nil || string(b) != "0123456789ab" || c.Contains(4) {
		t.Errorf("a value over the bound: %q %v, kept %v", b, err, c.Contains(4))
	}
}

func TestComputeOnce(t *testing.T) {
	c := New[int](1<<20, bytesLen)
	var computes atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			b, err := c.Get(7, func() ([]byte, error) {
				computes.Add(1)
				<-release
				return []byte("v"), nil
			})
			if err != nil || string(b) != "v" {
				t.Errorf("Get: %q %v", b, err)
			}
		})
	}
	close(release)
	wg.Wait()
	if n := computes.Load(); n != 1 {
		t.Errorf("%d computations for one key", n)
	}

	boom := errors.New("boom")
	if _, err := c.Get(8, func() ([]byte, error) { return nil, boom }); err != boom {
		t.Fatal(err)
	}
	if b, err := c.Get(8, value("ok")); err != nil || string(b) != "ok" {
		t.Errorf("an error was cached: %q %v", b, err)
	}
}

// TestDropped: every value the cache held and lets go, evicted or replaced,
// is handed to dropped once; the values it holds and a value it never kept
// are not.
func TestDropped(t *testing.T) {
	var dropped []string
	c := NewDropping[int](10, bytesLen, func(b []byte) { dropped = append(dropped, string(b)) })
	c.Put(1, []byte("aaaa"))
	c.Put(2, []byte("bbbb"))
	c.Put(1, []byte("cccc"))         // replaces aaaa
	c.Get(3, value("dddd"))          // evicts bbbb, the least recent
	c.Get(4, value("0123456789abc")) // over the bound: never kept
	if want := []string{"aaaa", "bbbb"}; !slices.Equal(dropped, want) {
		t.Errorf("dropped %q, want %q", dropped, want)
	}
}
