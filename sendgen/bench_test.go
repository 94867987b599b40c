package sendgen

import (
	"context"
	"io"
	"testing"
)

// benchCommands is one 256 MiB file written out in kernel-size chunks,
// zero data: the benchmarks measure the encoder, crc and plumbing, not I/O.
func benchCommands() []Command {
	s := &synth{chunk: 49152}
	s.begin()
	s.file(258, "big", 0, 256<<20)
	s.end()
	return s.cmds
}

func BenchmarkWriteTo(b *testing.B) {
	cmds := benchCommands()
	st := synthStream(b, 1, cmds)
	size, err := st.Size(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := synthStream(b, 1, cmds).WriteTo(context.Background(), io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReaderSequential reads the stream in 1 MiB requests, as FUSE
// does with max_read 1 MiB.
func BenchmarkReaderSequential(b *testing.B) {
	st := synthStream(b, 1, benchCommands())
	r, err := st.NewReader(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(r.Size())
	b.ReportAllocs()
	buf := make([]byte, 1<<20)
	for b.Loop() {
		r2, _ := st.NewReader(context.Background())
		for off := int64(0); off < r2.Size(); off += int64(len(buf)) {
			if _, err := r2.ReadAt(buf, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
	}
}
