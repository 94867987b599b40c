package sendgen

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"sendfs/btrfsread"
)

// A synthetic engine: tests describe a stream as a list of commands and
// replay it through Stream.gen, so the encoder, writer and reader are tested
// without a filesystem. Data refs are either Zero or filled by patternRead.

var testUUID = btrfsread.UUID{0x6b, 0x1d, 0x0e, 0x3a, 0x52, 0x8f, 0x4c, 0x11, 0x9a, 0x20, 0x7e, 0x55, 0x01, 0x02, 0x03, 0x04}

// synthStream returns a Stream that replays cmds. The replay hands out one
// reused Command and scribbles over it after each emit, so a sink that keeps
// the command instead of copying it shows up as corrupt output.
func synthStream(t testing.TB, proto int, cmds []Command) *Stream {
	t.Helper()
	sv := &btrfsread.Subvolume{ID: 256, Path: "snap", Root: btrfsread.RootItem{Flags: btrfsread.RootSubvolReadOnly, UUID: testUUID, Generation: 9, CTransid: 8}}
	s, err := NewStream(sv, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.enc.proto = proto // later protocols: the encoder is ready before the engine
	s.read = patternRead
	s.gen = func(ctx context.Context, out emitter) error {
		var c Command
		var ref DataRef
		for i := range cmds {
			c.Reset(cmds[i].Cmd)
			c.Attrs = append(c.Attrs, cmds[i].Attrs...)
			if cmds[i].Data != nil {
				ref = *cmds[i].Data
				c.Data = &ref
			}
			if err := out.emit(&c); err != nil {
				return err
			}
			for j := range c.Attrs {
				c.Attrs[j] = 0xA5
			}
			ref = DataRef{Ino: 0xdead, Offset: 1 << 40, Len: 7}
		}
		return nil
	}
	return s
}

// patternRead fills non-zero refs with bytes that depend on the inode and
// file offset of each byte, so misplaced data is detected.
func patternRead(ref *DataRef, p []byte) error {
	if ref.Zero {
		return readData(ref, p)
	}
	for i := range p {
		p[i] = byte(ref.Ino*131 + ref.FileOffset + uint64(i) + ref.FileOffset>>8)
	}
	return nil
}

// synth accumulates a command list.
type synth struct {
	cmds  []Command
	chunk uint32 // data bytes per WRITE
}

func (s *synth) add(cmd Cmd, build func(c *Command)) {
	c := Command{Cmd: cmd}
	build(&c)
	s.cmds = append(s.cmds, c)
}

// write emits the WRITEs of n bytes at file offset off of ino, chunked the
// way the kernel chunks one extent.
func (s *synth) write(path string, ino, off uint64, n uint64, zero bool) {
	for done := uint64(0); done < n; {
		l := min(n-done, uint64(s.chunk))
		ref := &DataRef{Ino: ino, FileOffset: off + done, Offset: done, Len: uint32(l), Zero: zero}
		s.add(CmdWrite, func(c *Command) {
			c.Bytes(AttrPath, []byte(path))
			c.U64(AttrFileOffset, off+done)
			c.Data = ref
		})
		done += l
	}
}

// file creates a regular file with the given extents (lengths; odd ones are
// zero-filled holes written out).
func (s *synth) file(ino uint64, name string, extents ...uint64) {
	orphan := fmt.Sprintf("o%d-5-0", ino)
	s.add(CmdMkfile, func(c *Command) { c.Bytes(AttrPath, []byte(orphan)); c.U64(AttrIno, ino) })
	s.add(CmdRename, func(c *Command) { c.Bytes(AttrPath, []byte(orphan)); c.Bytes(AttrPathTo, []byte(name)) })
	off := uint64(0)
	for i, n := range extents {
		s.write(name, ino, off, n, i%2 == 1)
		off += n
	}
	s.attrs(name, 0o644)
}

func (s *synth) attrs(name string, mode uint64) {
	s.add(CmdChown, func(c *Command) { c.Bytes(AttrPath, []byte(name)); c.U64(AttrUID, 1000); c.U64(AttrGID, 100) })
	s.add(CmdChmod, func(c *Command) { c.Bytes(AttrPath, []byte(name)); c.U64(AttrMode, mode) })
	s.add(CmdUtimes, func(c *Command) {
		c.Bytes(AttrPath, []byte(name))
		ts := btrfsread.Timespec{Sec: 1700000000, Nsec: 5}
		c.Timespec(AttrAtime, ts)
		c.Timespec(AttrMtime, ts)
		c.Timespec(AttrCtime, ts)
	})
}

func (s *synth) begin() {
	s.add(CmdSubvol, func(c *Command) {
		c.Bytes(AttrPath, []byte("snap"))
		c.UUID(AttrUUID, testUUID)
		c.U64(AttrCtransid, 8)
	})
}

func (s *synth) end() { s.add(CmdEnd, func(*Command) {}) }

// sampleCommands is a small full stream: a directory, files with data of
// awkward lengths (empty, 1 byte, exactly one chunk, several chunks, holes
// written out), an xattr and attributes.
func sampleCommands(chunk uint32) []Command {
	s := &synth{chunk: chunk}
	s.begin()
	s.add(CmdMkdir, func(c *Command) { c.Bytes(AttrPath, []byte("o257-5-0")); c.U64(AttrIno, 257) })
	s.add(CmdRename, func(c *Command) { c.Bytes(AttrPath, []byte("o257-5-0")); c.Bytes(AttrPathTo, []byte("dir")) })
	s.file(258, "dir/empty")
	s.file(259, "dir/one", 1)
	s.file(260, "dir/chunk", uint64(chunk))
	s.file(261, "big", 3*uint64(chunk)+1234, 2*uint64(chunk)+1, 4095)
	s.add(CmdSetXattr, func(c *Command) {
		c.Bytes(AttrPath, []byte("big"))
		c.Bytes(AttrXattrName, []byte("user.k"))
		c.Bytes(AttrXattrData, []byte("value"))
	})
	s.add(CmdTruncate, func(c *Command) { c.Bytes(AttrPath, []byte("big")); c.U64(AttrSize, 1<<20) })
	s.attrs("dir", 0o755)
	s.attrs("", 0o755)
	s.end()
	return s.cmds
}

// encodeSequential is the reference encoding: every command in order, data
// read inline, no pipeline.
func encodeSequential(t testing.TB, proto int, cmds []Command) []byte {
	t.Helper()
	e := encoder{proto: proto}
	out := appendStreamHeader(nil, proto)
	for i := range cmds {
		var data []byte
		if cmds[i].Data != nil {
			data = make([]byte, cmds[i].Data.Len)
			if err := patternRead(cmds[i].Data, data); err != nil {
				t.Fatal(err)
			}
		}
		out = e.appendCommand(out, &cmds[i], data)
	}
	return out
}

// writeAll runs WriteTo into memory.
func writeAll(t testing.TB, s *Stream) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := s.WriteTo(context.Background(), &buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	return buf.Bytes()
}
