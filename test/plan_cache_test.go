package test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMountPlanCache: the plans written while the sizes are counted are
// kept in --cache-dir, and the next mount serves reads in any order from
// them with the bytes of sendfs send; plan files that are corrupt or
// truncated are ignored with a log line, and the reads still give sendfs
// send's bytes.
func TestMountPlanCache(t *testing.T) {
	requireFUSE(t)
	fs := newFS(t, fsOpts{Size: 1 << 30})
	data := subvolCreate(t, fs, "data")
	writeFile(t, filepath.Join(data, "big"), random(9<<20, 1))
	mustMkdir(t, filepath.Join(data, "small"))
	for i := range 3000 {
		writeFile(t, filepath.Join(data, "small", fmt.Sprintf("f%d", i)), patterned(1+i*37%6000, uint64(i)))
	}
	snapshotRO(t, fs, "data", "snaps/a")
	for i := range 500 {
		writeFile(t, filepath.Join(data, "small", fmt.Sprintf("g%d", i)), patterned(1+i*53%6000, uint64(i)))
	}
	snapshotRO(t, fs, "data", "snaps/b")
	remountRO(t, fs)
	streams := [][2]string{{"snaps/a", ""}, {"snaps/b", "snaps/a"}}
	want := map[[2]string][]byte{}
	for _, p := range streams {
		want[p] = sendfsSend(t, fs.Images, p[0], p[1])
	}
	cache := t.TempDir()
	plans := filepath.Join(cache, "plans")
	mount := func() *sendfsMount { return startMount(t, fs.Images, "--cache-dir", cache, "--refresh", "0") }
	stop := func(m *sendfsMount) {
		run(t, "fusermount3", "-u", m.dir)
		if err := m.waitExit(t, 30*time.Second); err != nil {
			t.Fatalf("sendfs mount after fusermount3 -u: %v\n%s", err, m.stderr)
		}
	}

	// First mount: counting the sizes writes the plans.
	m := mount()
	if m.waitLog(t, "stream sizes ready", time.Minute) == "" {
		t.Fatalf("sizes not counted in a minute\n%s", m.stderr)
	}
	for _, p := range streams {
		preads(t, m.streamPath(p[0], p[1]), want[p], []int64{int64(len(want[p])) * 95 / 100}, 64<<10)
	}
	files, err := filepath.Glob(filepath.Join(plans, "*.plan"))
	must(t, err)
	if len(files) < len(streams) {
		t.Fatalf("%d plan files in %s, want %d or more", len(files), plans, len(streams))
	}
	stop(m)
	kept := map[string]time.Time{}
	for _, f := range files {
		st, err := os.Stat(f)
		must(t, err)
		kept[f] = st.ModTime()
	}

	// Second mount: random reads, then the whole stream, from the plans.
	m = mount()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range streams {
		w := want[p]
		offs := make([]int64, 100)
		for i := range offs {
			offs[i] = rng.Int64N(int64(len(w)))
		}
		preads(t, m.streamPath(p[0], p[1]), w, offs, 300<<10)
		sameBytes(t, "cat "+p[0], w, readFile(t, m.streamPath(p[0], p[1])))
	}
	used := 0
	for f, mod := range kept {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(mod) {
			used++
		}
	}
	if used < len(streams) {
		t.Errorf("%d plan files used by the second mount, want %d", used, len(streams))
	}
	if line := m.waitLog(t, "stream plan", 0); line != "" {
		t.Errorf("second mount: %s", line)
	}
	stop(m)

	// Third mount: plan files with a corrupt page, or truncated.
	for i, f := range files {
		b := readFile(t, f)
		if i%2 == 0 {
			b[len(b)/2] ^= 0x20
		} else {
			b = b[:len(b)*2/3]
		}
		must(t, os.WriteFile(f, b, 0o600))
	}
	m = mount()
	for _, p := range streams {
		w := want[p]
		preads(t, m.streamPath(p[0], p[1]), w, []int64{int64(len(w)) / 2, int64(len(w)) * 95 / 100, 0, int64(len(w)) / 3}, 1<<20)
	}
	if line := m.waitLog(t, "cached stream plan ignored", 10*time.Second); line == "" {
		t.Errorf("no log line for the damaged plan files\n%s", m.stderr)
	}
	stop(m)
}

// preads opens p once and reads n bytes at each offset, in order,
// comparing with want.
func preads(t *testing.T, p string, want []byte, offs []int64, n int) {
	t.Helper()
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	buf := make([]byte, n)
	for _, off := range offs {
		got, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			t.Fatalf("%s: read at %d: %v", p, off, err)
		}
		if !sameBytes(t, fmt.Sprintf("%s: read of %d at %d", p, n, off), want[off:min(off+int64(n), int64(len(want)))], buf[:got]) {
			return
		}
	}
}
