package test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"sendfs/internal/testimage"
)

// TestClientReads: whatever the order and concurrency of its reads, every
// client gets from the mount the bytes of `sendfs send`, for a full and an
// incremental stream: cat, rclone copy with 4 and with 16 streams (ranges
// read in parallel), restic backup then restic dump, pread from 8
// goroutines in random order over the whole file, and a reader that jumps
// to a late offset first, then reads from the middle to the end. Each client reads on a fresh mount, so that no
// byte comes from the page cache of an earlier one.
func TestClientReads(t *testing.T) {
	requireFUSE(t)
	testimage.Require(t, false, "rclone", "restic")
	fs := newFS(t, fsOpts{Size: 1 << 30})
	data := subvolCreate(t, fs, "data")
	writeFile(t, filepath.Join(data, "big"), random(24<<20+4321, 1))
	writeFile(t, filepath.Join(data, "text"), patterned(3<<20, 2))
	mustMkdir(t, filepath.Join(data, "small"))
	for i := range 600 {
		writeFile(t, filepath.Join(data, "small", fmt.Sprintf("f%03d", i)), patterned(1+i*37, uint64(i)))
	}
	mustLink(t, filepath.Join(data, "text"), filepath.Join(data, "small", "text-link"))
	setXattr(t, filepath.Join(data, "text"), "user.note", []byte("x"))
	snapshotRO(t, fs, "data", "snaps/c.1")
	writeAt(t, filepath.Join(data, "big"), 4<<20, random(6<<20, 3))
	writeFile(t, filepath.Join(data, "new"), random(10<<20, 4))
	for i := 0; i < 600; i += 3 {
		mustRemove(t, filepath.Join(data, "small", fmt.Sprintf("f%03d", i)))
	}
	mustRename(t, filepath.Join(data, "small"), filepath.Join(data, "renamed"))
	snapshotRO(t, fs, "data", "snaps/c.2")
	remountRO(t, fs)

	type stream struct {
		what, child, parent string
		want                []byte
	}
	streams := []*stream{{what: "full", child: "snaps/c.2"}, {what: "incremental", child: "snaps/c.2", parent: "snaps/c.1"}}
	for _, s := range streams {
		s.want = sendfsSend(t, fs.Images, s.child, s.parent)
	}
	cacheDir := t.TempDir()
	for _, c := range []struct {
		name string
		read func(t *testing.T, paths []string) [][]byte
	}{
		{"cat", func(t *testing.T, paths []string) [][]byte {
			return each(paths, func(p string) []byte { return output(t, "cat", p) })
		}},
		{"rclone-4", func(t *testing.T, paths []string) [][]byte { return rcloneCopy(t, paths, 4) }},
		{"rclone-16", func(t *testing.T, paths []string) [][]byte { return rcloneCopy(t, paths, 16) }},
		{"restic", resticBackupDump},
		{"pread-8", func(t *testing.T, paths []string) [][]byte { return preadShuffled(t, paths, 8) }},
		{"jump-late-first", func(t *testing.T, paths []string) [][]byte {
			return each(paths, func(p string) []byte { return readLateFirst(t, p) })
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := startMount(t, fs.Images, "--cache-dir", cacheDir)
			var paths []string
			for _, s := range streams {
				paths = append(paths, m.streamPath(s.child, s.parent))
			}
			got := c.read(t, paths)
			for i, s := range streams {
				sameBytes(t, c.name+", "+s.what+" stream", s.want, got[i])
			}
		})
	}
}

// each is read applied to every path.
func each(paths []string, read func(string) []byte) [][]byte {
	var got [][]byte
	for _, p := range paths {
		got = append(got, read(p))
	}
	return got
}

// rcloneCopy copies each file with `rclone copy`, in ranges read by the
// given number of streams at once (rclone checks that they were), and
// returns the copies.
func rcloneCopy(t *testing.T, paths []string, streams int) [][]byte {
	return each(paths, func(p string) []byte {
		dst := t.TempDir()
		var stderr bytes.Buffer
		cmd, cancel := command("rclone", "copy", "-vv", "--multi-thread-streams", fmt.Sprint(streams), "--multi-thread-cutoff", "1M", p, dst)
		defer cancel()
		cmd.Env = append(os.Environ(), "RCLONE_CONFIG="+filepath.Join(dst, "none.conf"))
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("rclone copy %s: %v\n%s", p, err, lastLines(stderr.String(), 20))
		}
		if want := fmt.Sprintf("Starting multi-thread copy with %d parts", streams); !strings.Contains(stderr.String(), want) {
			t.Fatalf("rclone copy %s: no %q in its log:\n%s", p, want, lastLines(stderr.String(), 20))
		}
		return readFile(t, filepath.Join(dst, filepath.Base(p)))
	})
}

// resticBackupDump backs the files up in one restic snapshot (restic reads
// two files at once) and returns what restic dump gives back.
func resticBackupDump(t *testing.T, paths []string) [][]byte {
	dir := t.TempDir()
	restic := func(args ...string) []byte {
		var stdout, stderr bytes.Buffer
		cmd, cancel := command("restic", args...)
		defer cancel()
		cmd.Env = append(os.Environ(), "RESTIC_PASSWORD=sendfs", "RESTIC_REPOSITORY="+filepath.Join(dir, "repo"),
			"RESTIC_CACHE_DIR="+filepath.Join(dir, "cache"))
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("restic %s: %v\n%s", strings.Join(args, " "), err, lastLines(stderr.String(), 20))
		}
		return stdout.Bytes()
	}
	restic("init")
	restic(append([]string{"backup", "--quiet"}, paths...)...)
	return each(paths, func(p string) []byte { return restic("dump", "latest", p) })
}

// preadShuffled reads every file in pieces of random sizes (1 byte to
// 2 MiB) covering it, from workers goroutines taking the pieces of all the
// files in random order.
func preadShuffled(t *testing.T, paths []string, workers int) [][]byte {
	type piece struct {
		f   *os.File
		buf []byte
		off int64
	}
	rng := rand.New(rand.NewPCG(13, 14))
	var pieces []piece
	got := make([][]byte, len(paths))
	for i, p := range paths {
		f, err := os.Open(p)
		must(t, err)
		defer f.Close()
		st, err := f.Stat()
		must(t, err)
		got[i] = make([]byte, st.Size())
		for off := int64(0); off < st.Size(); {
			n := min(1+rng.Int64N(2<<20), st.Size()-off)
			pieces = append(pieces, piece{f, got[i][off : off+n], off})
			off += n
		}
	}
	rng.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
	work := make(chan piece)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for p := range work {
				if _, err := p.f.ReadAt(p.buf, p.off); err != nil && errs[w] == nil {
					errs[w] = fmt.Errorf("pread %d bytes at %d of %s: %v", len(p.buf), p.off, p.f.Name(), err)
				}
			}
		})
	}
	for _, p := range pieces {
		work <- p
	}
	close(work)
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
	return got
}

// readLateFirst opens p and reads 64 KiB at 9/10 of it, then from 1/2 to
// the end, then the whole file from the start, and returns the whole file
// after checking that the first two reads agree with it.
func readLateFirst(t *testing.T, p string) []byte {
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	st, err := f.Stat()
	must(t, err)
	late := st.Size() * 9 / 10
	buf := make([]byte, min(64<<10, st.Size()-late))
	if _, err := f.ReadAt(buf, late); err != nil {
		t.Fatalf("read %d bytes at %d of %s: %v", len(buf), late, p, err)
	}
	mid := st.Size() / 2
	_, err = f.Seek(mid, io.SeekStart)
	must(t, err)
	rest, err := io.ReadAll(f)
	must(t, err)
	_, err = f.Seek(0, io.SeekStart)
	must(t, err)
	all, err := io.ReadAll(f)
	must(t, err)
	if int64(len(all)) == st.Size() {
		sameBytes(t, fmt.Sprintf("read at %d first", late), all[late:late+int64(len(buf))], buf)
		sameBytes(t, fmt.Sprintf("read from %d to the end", mid), all[mid:], rest)
	}
	return all
}
