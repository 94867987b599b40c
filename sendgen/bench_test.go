package sendgen

import (
	"context"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// benchCommands is one 256 MiB file written out in kernel-size chunks,
// zero data or not.
func benchCommands(zero bool) []Command {
	s := &synth{chunk: 49152}
	s.begin()
	if zero {
		s.file(258, "big", 0, 256<<20) // the second extent is the zeros
	} else {
		s.file(258, "big", 256<<20)
	}
	s.end()
	return s.cmds
}

// benchSource is what a benchmark stream's data costs: "zero" measures the
// encoder, crc and plumbing alone; "file" also copies every byte from a
// file in the page cache and checksums each 4 KiB sector, as btrfsread
// does for uncompressed extents, so the per-byte costs are the real ones.
type benchSource struct {
	name string
	zero bool
}

var benchSources = []benchSource{{"zero", true}, {"file", false}}

// benchStream returns a fresh stream of benchCommands reading its data
// from src.
func benchStream(b *testing.B, src benchSource, cmds []Command) *Stream {
	st := synthStream(b, 1, cmds)
	if !src.zero {
		st.read = pageCacheRead(b)
	}
	return st
}

// pageCacheFile is a 64 MiB file that pageCacheRead copies from, made once
// per benchmark binary.
var pageCacheFile = sync.OnceValues(func() (*os.File, error) {
	dir, err := os.MkdirTemp("", "sendgen-bench-")
	if err != nil {
		return nil, err
	}
	name := filepath.Join(dir, "data")
	f, err := os.Create(name)
	os.RemoveAll(dir) // the open file lives on
	if err != nil {
		return nil, err
	}
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i*7 + i>>9)
	}
	for range pageCacheSize >> 20 {
		if _, err := f.Write(block); err != nil {
			return nil, err
		}
	}
	return f, nil
})

const pageCacheSize = 64 << 20

func pageCacheRead(b *testing.B) func(*DataRef, []byte) error {
	f, err := pageCacheFile()
	if err != nil {
		b.Fatal(err)
	}
	return func(ref *DataRef, p []byte) error {
		off := int64(ref.FileOffset % (pageCacheSize - 1<<20))
		if _, err := f.ReadAt(p, off); err != nil {
			return err
		}
		for s := 0; s < len(p); s += 4096 {
			crc32.Checksum(p[s:min(s+4096, len(p))], castagnoli)
		}
		return nil
	}
}

func BenchmarkWriteTo(b *testing.B) {
	for _, src := range benchSources {
		b.Run(src.name, func(b *testing.B) {
			cmds := benchCommands(src.zero)
			size, err := benchStream(b, src, cmds).Size(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := benchStream(b, src, cmds).WriteTo(context.Background(), io.Discard, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReaderSequential reads the stream in 1 MiB requests, as FUSE
// does with max_read 1 MiB: one at a time, or two in flight as the
// kernel's asynchronous readahead sends them.
func BenchmarkReaderSequential(b *testing.B) {
	for _, src := range benchSources {
		for _, inFlight := range []int{1, 2} {
			name := src.name
			if inFlight > 1 {
				name += "-async"
			}
			b.Run(name, func(b *testing.B) {
				st := benchStream(b, src, benchCommands(src.zero))
				r, err := st.NewReader(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(readerSize(b, r))
				b.ReportAllocs()
				for b.Loop() {
					r, _ := st.NewReader(context.Background())
					readSequential(b, r, 1<<20, inFlight)
				}
			})
		}
	}
}

// readSequential reads all of r in requests of size req, inFlight at once
// (each in its own goroutine, like go-fuse's request handlers).
func readSequential(b *testing.B, r *Reader, req, inFlight int) {
	sem := make(chan []byte, inFlight)
	for range inFlight {
		sem <- make([]byte, req)
	}
	var wg sync.WaitGroup
	for off := int64(0); off < readerSize(b, r); off += int64(req) {
		buf := <-sem
		wg.Go(func() {
			defer func() { sem <- buf }()
			if _, err := r.ReadAt(buf, off); err != nil && err != io.EOF {
				b.Error(err)
			}
		})
	}
	wg.Wait()
}
