package test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestMountReadPaths: every way of reading a stream through a fresh mount
// gives the bytes of sendfs send: cat from the start (served without an
// index), and concurrent readers, sequential ones of the same stream and
// of others beside random preads on one open (served from the index).
// TestClientReads reads at a late offset first. A mount that does not
// answer within replyBound fails the test with its goroutines.
func TestMountReadPaths(t *testing.T) {
	requireFUSE(t)
	fs := newFS(t, fsOpts{Size: 2 << 30})
	data := subvolCreate(t, fs, "data")
	for i := range 3 {
		writeFile(t, filepath.Join(data, fmt.Sprintf("big%d", i)), random(9<<20+i*4099, uint64(i)))
	}
	mustMkdir(t, filepath.Join(data, "small"))
	for i := range 2000 {
		writeFile(t, filepath.Join(data, "small", fmt.Sprintf("f%d", i)), patterned(1+i*37%6000, uint64(i)))
	}
	snapshotRO(t, fs, "data", "snaps/a")
	writeFile(t, filepath.Join(data, "new"), random(3<<20, 9))
	snapshotRO(t, fs, "data", "snaps/b")
	remountRO(t, fs)
	streams := [][2]string{{"snaps/a", ""}, {"snaps/b", ""}, {"snaps/b", "snaps/a"}}
	want := map[[2]string][]byte{}
	for _, p := range streams {
		want[p] = sendfsSend(t, fs.Images, p[0], p[1])
	}
	a := streams[0]
	fresh := func(t *testing.T) *sendfsMount {
		return startMount(t, fs.Images, "--cache-dir", t.TempDir(), "--refresh", "0")
	}

	t.Run("Cat", func(t *testing.T) {
		m := fresh(t)
		m.within(t, replyBound, "cat", func() {
			sameBytes(t, "cat", want[a], output(t, "cat", m.streamPath(a[0], a[1])))
		})
	})

	t.Run("Concurrent", func(t *testing.T) {
		m := fresh(t)
		m.within(t, replyBound, "concurrent readers", func() {
			var wg sync.WaitGroup
			for i, p := range append(streams, a, a) {
				wg.Go(func() {
					sameBytes(t, fmt.Sprintf("reader %d of %s from %q", i, p[0], p[1]), want[p], readFile(t, m.streamPath(p[0], p[1])))
				})
			}
			wg.Go(func() {
				f, err := os.Open(m.streamPath(a[0], a[1]))
				if err != nil {
					t.Error(err)
					return
				}
				defer f.Close()
				w := want[a]
				rng := rand.New(rand.NewPCG(1, 2))
				for range 200 {
					off := rng.Int64N(int64(len(w)))
					buf := make([]byte, 1+rng.IntN(300<<10))
					n, err := f.ReadAt(buf, off)
					if (err != nil && err != io.EOF) || !sameBytes(t, fmt.Sprintf("pread of %d at %d", len(buf), off), w[off:min(off+int64(len(buf)), int64(len(w)))], buf[:n]) {
						t.Errorf("pread of %d at %d: %d, %v", len(buf), off, n, err)
						return
					}
				}
			})
			wg.Wait()
		})
	})
}
