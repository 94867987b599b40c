package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestWriteFileUnnamedWhileWriting: while the stream is written, FILE's
// directory holds no name at all (O_TMPFILE), so a SIGKILL leaves nothing;
// replacing an existing FILE works the same way.
func TestWriteFileUnnamedWhileWriting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.stream")
	for _, existing := range []bool{false, true} {
		if existing {
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want := 0 // names in dir while writing: only the existing FILE
		if existing {
			want = 1
		}
		write := func(w io.Writer) (int64, error) {
			n, err := w.Write([]byte("new stream"))
			if names := dirNames(t, dir); len(names) != want {
				t.Errorf("while writing (existing FILE %v), the directory holds %q", existing, names)
			}
			return int64(n), err
		}
		if err := writeFile(context.Background(), path, write); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "new stream" {
			t.Fatalf("read back %q, %v", b, err)
		}
		if names := dirNames(t, dir); len(names) != 1 {
			t.Errorf("after the write, the directory holds %q", names)
		}
	}
}

// TestOverlaps: which identities make writing one path damage another.
func TestOverlaps(t *testing.T) {
	file := fileIDs{self: fileID{dev: 1, ino: 2}}
	other := fileIDs{self: fileID{dev: 1, ino: 3}}
	loop := fileIDs{self: fileID{block: true, dev: 7}, backing: &fileID{dev: 1, ino: 2}}
	disk := fileIDs{self: fileID{block: true, dev: 8}}
	part1 := fileIDs{self: fileID{block: true, dev: 9}, disk: &fileID{block: true, dev: 8}}
	part2 := fileIDs{self: fileID{block: true, dev: 10}, disk: &fileID{block: true, dev: 8}}
	for _, c := range []struct {
		name string
		a, b fileIDs
		want bool
	}{
		{"same file", file, file, true},
		{"other file", file, other, false},
		{"loop over its backing file", loop, file, true},
		{"backing file over its loop", file, loop, true},
		{"loop over another file", loop, other, false},
		{"disk over its partition", disk, part1, true},
		{"partition over its disk", part1, disk, true},
		{"two partitions", part1, part2, false},
	} {
		if got := c.a.overlaps(c.b); got != c.want {
			t.Errorf("%s: overlaps = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestInterruptibleWriter: a write blocked forever returns once ctx is
// cancelled.
func TestInterruptibleWriter(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	iw := newInterruptibleWriter(ctx, w)
	defer iw.Close()
	done := make(chan error, 1)
	go func() {
		_, err := iw.Write(make([]byte, 1<<20)) // more than a pipe holds
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the blocked write did not return after cancel")
	}
}

// countingWriter records the size of every write it gets.
type countingWriter struct {
	bytes.Buffer
	writes []int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, len(p))
	return c.Buffer.Write(p)
}

// TestOutputWriter: small writes are gathered, big ones pass straight
// through, and the bytes come out in order.
func TestOutputWriter(t *testing.T) {
	var dst countingWriter
	o := newOutputWriter(&dst)
	var want []byte
	for i, n := range []int{100, 200, directWrite, 300, outputBuffer, 5, 6} {
		p := bytes.Repeat([]byte{byte(i)}, n)
		want = append(want, p...)
		if _, err := o.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.Bytes(), want) {
		t.Fatal("the bytes written differ from the bytes given")
	}
	if w := []int{300, directWrite, 300, outputBuffer, 11}; !slices.Equal(dst.writes, w) {
		t.Errorf("writes of %v bytes, want %v", dst.writes, w)
	}
}
