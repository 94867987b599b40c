package sendgen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// scriptCommands turns fuzz input into a valid command sequence: the first
// byte picks the WRITE chunk size, then each pair of bytes adds metadata,
// written data, written zeros, or a WRITE that breaks a run.
func scriptCommands(script []byte) []Command {
	s := &synth{chunk: 49152}
	if len(script) > 0 {
		s.chunk = 1 + uint32(script[0])*193
		script = script[1:]
	}
	s.begin()
	ino, off := uint64(300), uint64(0)
	const maxData = 2 << 20
	data := uint64(0)
	for i := 0; i+1 < len(script) && data < maxData; i += 2 {
		op, arg := script[i], uint64(script[i+1])
		name := string(bytes.Repeat([]byte{'n'}, int(arg%50)+1))
		switch op % 5 {
		case 0:
			s.attrs(name, arg)
		case 1, 2:
			n := arg*arg*3 + 1
			s.write(name, ino, off, n, op%5 == 2)
			off += n
			data += n
		case 3:
			ino++
			s.write(name, ino, arg*4096, arg+1, false)
			data += arg + 1
		case 4:
			s.add(CmdSetXattr, func(c *Command) {
				c.Bytes(AttrPath, []byte(name))
				c.Bytes(AttrXattrName, []byte("user.x"))
				c.Bytes(AttrXattrData, bytes.Repeat([]byte{byte(arg)}, int(arg)*200))
			})
		}
	}
	s.end()
	return s.cmds
}

// FuzzRanges is the differential test of the three ways to produce a
// stream: counted size, WriteTo (and the plain sequential encoding) and
// ReadAt of an arbitrary range must agree.
func FuzzRanges(f *testing.F) {
	f.Add([]byte{0, 1, 7, 2, 200, 0, 3}, uint32(0), uint32(1<<20))
	f.Add([]byte{255, 1, 255, 1, 255, 4, 100, 3, 9, 1, 1}, uint32(70000), uint32(4096))
	f.Add([]byte{1, 1, 20, 1, 20, 2, 20, 0, 0, 1, 20}, uint32(1000), uint32(100000))
	f.Fuzz(func(t *testing.T, script []byte, off, n uint32) {
		cmds := scriptCommands(script)
		want := encodeSequential(t, 1, cmds)
		size, err := synthStream(t, 1, cmds).Size(context.Background())
		if err != nil || size != int64(len(want)) {
			t.Fatalf("Size = %d, %v; encoded %d bytes", size, err, len(want))
		}
		if got := writeAll(t, synthStream(t, 1, cmds)); !bytes.Equal(got, want) {
			t.Fatalf("WriteTo (%d bytes) differs from the sequential encoding (%d bytes)", len(got), len(want))
		}
		r, err := synthStream(t, 1, cmds).NewReader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		start := int64(off) % (size + 16)
		buf := make([]byte, min(n, 4<<20))
		got, err := r.ReadAt(buf, start)
		wantBytes := []byte{}
		if start < size {
			wantBytes = want[start:min(start+int64(len(buf)), size)]
		}
		if got != len(wantBytes) || !bytes.Equal(buf[:got], wantBytes) {
			t.Fatalf("ReadAt(%d bytes at %d) of %d = %d bytes, %v; differs from WriteTo", len(buf), start, size, got, err)
		}
		if (err != nil) != (start+int64(len(buf)) > size) || (err != nil && !errors.Is(err, io.EOF)) {
			t.Fatalf("ReadAt(%d bytes at %d) of %d: error %v", len(buf), start, size, err)
		}
	})
}
