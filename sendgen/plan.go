package sendgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"sendfs/btrfsread"
)

// plan is a stream's index for random access: the whole stream as a sorted
// list of segments. Metadata commands are kept encoded; a data command keeps
// only what regenerates it (its attributes and DataRef), and commands that
// continue one another through an extent share one dataRun, so the plan's
// memory follows the metadata, never the file data.
//
// A plan being built (plan_build.go) is published in parts: a part is a
// plan whose segments end at size, the offset it covers so far.
type plan struct {
	enc   encoder
	read  func(*DataRef, []byte) error
	segs  []segment
	size  int64
	whole bool // the whole stream: size is its length
	// file serves a whole plan kept in the cache directory instead of segs
	// (plan_file.go).
	file *planFile
	// bytes is what a page of a plan file costs in memory.
	bytes int64
}

// segment is a stretch of the stream starting at off and ending where the
// next segment starts (or at the plan's size): encoded bytes of whole
// metadata commands (the first also holds the stream header), or a run of
// data commands.
type segment struct {
	off  int64
	meta []byte
	run  *dataRun
}

// dataRun is n consecutive data commands that differ only in where their
// data starts: command i is the first shifted by i*step bytes (file offset,
// FILE_OFFSET attribute, offset in the extent). Every command but the last
// carries step bytes of data. One run usually covers one extent.
type dataRun struct {
	cmd        Cmd
	attrs      []byte // the first command's
	foPos      int    // offset of the FILE_OFFSET value in attrs, -1 if none
	ref        DataRef
	step       uint32
	n          int
	lastLen    uint32
	cmdLen     int64 // encoded length of each command but the last
	lastCmdLen int64
}

// locate returns the command holding byte rel of the run and where that
// command starts.
func (r *dataRun) locate(rel int64) (i int, start int64) {
	i = min(int(rel/r.cmdLen), r.n-1)
	return i, int64(i) * r.cmdLen
}

// command rebuilds command i of the run, with its attributes in attrs.
func (r *dataRun) command(i int, attrs []byte, ref *DataRef) Command {
	shift := uint64(i) * uint64(r.step)
	*ref = r.ref
	ref.Offset += shift
	ref.FileOffset += shift
	ref.Len = r.step
	if i == r.n-1 {
		ref.Len = r.lastLen
	}
	attrs = append(attrs[:0], r.attrs...)
	if r.foPos >= 0 {
		fo := binary.LittleEndian.Uint64(attrs[r.foPos:])
		binary.LittleEndian.PutUint64(attrs[r.foPos:], fo+shift)
	}
	return Command{Cmd: r.cmd, Attrs: attrs, Data: ref}
}

// continuedBy reports whether c is the run's next command: everything it
// holds is what command(n) would rebuild, and the run's commands so far are
// all full.
func (r *dataRun) continuedBy(c *Command) bool {
	d := c.Data
	if r.foPos < 0 || d.Encoded || r.ref.Encoded || r.lastLen != r.step || c.Cmd != r.cmd || d.Len == 0 || d.Len > r.step || len(c.Attrs) != len(r.attrs) {
		return false
	}
	shift := uint64(r.n) * uint64(r.step)
	want := r.ref
	want.Offset += shift
	want.FileOffset += shift
	want.Len = d.Len
	if !sameRef(&want, d) {
		return false
	}
	fo := binary.LittleEndian.Uint64(r.attrs[r.foPos:]) + shift
	return binary.LittleEndian.Uint64(c.Attrs[r.foPos:]) == fo &&
		bytes.Equal(c.Attrs[:r.foPos], r.attrs[:r.foPos]) &&
		bytes.Equal(c.Attrs[r.foPos+8:], r.attrs[r.foPos+8:])
}

func sameRef(a, b *DataRef) bool {
	return a.Subvol == b.Subvol && a.Ino == b.Ino && a.FileOffset == b.FileOffset &&
		a.Offset == b.Offset && a.Len == b.Len && a.Zero == b.Zero && a.Encoded == b.Encoded &&
		sameExtent(&a.Extent, &b.Extent)
}

func sameExtent(a, b *btrfsread.FileExtent) bool {
	return a.Generation == b.Generation && a.RamBytes == b.RamBytes &&
		a.Compression == b.Compression && a.Type == b.Type &&
		a.DiskBytenr == b.DiskBytenr && a.DiskNumBytes == b.DiskNumBytes &&
		a.Offset == b.Offset && a.NumBytes == b.NumBytes &&
		bytes.Equal(a.Inline, b.Inline)
}

// fileOffsetPos finds the value of the FILE_OFFSET attribute in attrs, or -1.
func fileOffsetPos(attrs []byte) int {
	for pos := 0; pos+tlvHeaderLen <= len(attrs); {
		typ := Attr(binary.LittleEndian.Uint16(attrs[pos:]))
		n := int(binary.LittleEndian.Uint16(attrs[pos+2:]))
		pos += tlvHeaderLen
		if typ == AttrFileOffset && n == 8 && pos+8 <= len(attrs) {
			return pos
		}
		pos += n
	}
	return -1
}

// find returns the index of the segment holding stream byte off.
func (p *plan) find(off int64) int {
	return sort.Search(len(p.segs), func(i int) bool { return p.segs[i].off > off }) - 1
}

// encodeCmd encodes command i of the run in segment si, reading its data,
// into buf[:0]: in place when buf has the capacity, which the caller
// bounds to keep the command from running over what follows it.
func (p *plan) encodeCmd(buf []byte, si, i int) ([]byte, error) {
	seg := &p.segs[si]
	var ref DataRef
	var attrs [64]byte
	c := seg.run.command(i, attrs[:0], &ref)
	buf, err := appendData(p.enc.appendPrefix(buf[:0], &c), &ref, p.read)
	if err == nil && int64(len(buf)) != cmdLenAt(seg, i) {
		// Never serve bytes that would shift the rest of the stream.
		return buf, fmt.Errorf("sendgen: data command at stream offset %d regenerated with %d bytes instead of %d", seg.off+int64(i)*seg.run.cmdLen, len(buf), cmdLenAt(seg, i))
	}
	return buf, err
}

// Arena sizes for the plan's bytes: small streams get small arenas, big
// ones 1 MiB blocks.
const (
	minArena = 4 << 10
	maxArena = 1 << 20
)

// planBuilder is the emitter that builds a plan. Encoded metadata and the
// attributes of data runs are packed into arenas; segments slice them.
type planBuilder struct {
	enc       encoder
	read      func(*DataRef, []byte) error
	out       *planBuild // where the parts are published, nil if not
	published int64      // how far the last published part covers
	segs      []segment
	arena     []byte
	metaStart int   // start in arena of the open metadata segment, -1 if none
	metaOff   int64 // its stream offset
	run       *dataRun
	runOff    int64
	off       int64 // stream offset after everything emitted so far
}

func newPlanBuilder(enc encoder, read func(*DataRef, []byte) error, out *planBuild) *planBuilder {
	b := &planBuilder{enc: enc, read: read, out: out, metaStart: -1}
	b.reserve(streamHeaderLen)
	b.openMeta()
	b.arena = appendStreamHeader(b.arena, enc.proto)
	b.off = int64(len(b.arena))
	return b
}

// publishEvery: a part of the plan is published each time it covers this
// many more bytes of the stream (and when it is complete).
const publishEvery = 256 << 10

func (b *planBuilder) emit(c *Command) error {
	b.add(c)
	if b.out != nil {
		if covered := b.covered(); covered-b.published >= publishEvery {
			b.published = covered
			b.out.grow(&plan{enc: b.enc, read: b.read, segs: b.segs[:len(b.segs):len(b.segs)], size: covered})
		}
	}
	return nil
}

// covered is where the open segment starts: every segment before it is
// final.
func (b *planBuilder) covered() int64 {
	switch {
	case b.run != nil:
		return b.runOff
	case b.metaStart >= 0:
		return b.metaOff
	}
	return b.off
}

// add appends c to the plan.
func (b *planBuilder) add(c *Command) {
	if c.Data == nil {
		b.closeRun()
		n := b.enc.commandLen(c)
		b.reserve(int(n))
		b.openMeta()
		b.arena = b.enc.appendCommand(b.arena, c, nil)
		b.off += n
		return
	}
	n := b.enc.commandLen(c)
	if b.run != nil && b.run.continuedBy(c) {
		b.run.n++
		b.run.lastLen = c.Data.Len
		b.run.lastCmdLen = n
		b.off += n
		return
	}
	b.closeRun()
	b.closeMeta()
	r := &dataRun{cmd: c.Cmd, ref: *c.Data, step: c.Data.Len, n: 1, lastLen: c.Data.Len, cmdLen: n, lastCmdLen: n}
	r.attrs = b.keep(c.Attrs)
	r.foPos = fileOffsetPos(r.attrs)
	if inl := c.Data.Extent.Inline; inl != nil {
		// A copy: the original pins a whole tree block.
		r.ref.Extent.Inline = b.keep(inl)
	}
	b.run, b.runOff = r, b.off
	b.off += n
}

// keep copies v into the arena.
func (b *planBuilder) keep(v []byte) []byte {
	b.reserve(len(v))
	start := len(b.arena)
	b.arena = append(b.arena, v...)
	return b.arena[start:len(b.arena):len(b.arena)]
}

// reserve makes room for n more bytes, moving to a new arena if needed (the
// open metadata segment ends in the old one).
func (b *planBuilder) reserve(n int) {
	if cap(b.arena)-len(b.arena) >= n {
		return
	}
	reopen := b.metaStart >= 0
	b.closeMeta()
	b.arena = make([]byte, 0, max(min(2*cap(b.arena), maxArena), minArena, n))
	if reopen {
		b.openMeta()
	}
}

func (b *planBuilder) openMeta() {
	if b.metaStart < 0 {
		b.metaStart, b.metaOff = len(b.arena), b.off
	}
}

func (b *planBuilder) closeMeta() {
	if b.metaStart >= 0 && len(b.arena) > b.metaStart {
		b.segs = append(b.segs, segment{off: b.metaOff, meta: b.arena[b.metaStart:len(b.arena):len(b.arena)]})
	}
	b.metaStart = -1
}

func (b *planBuilder) closeRun() {
	if b.run != nil {
		b.segs = append(b.segs, segment{off: b.runOff, run: b.run})
		b.run = nil
	}
}

// reuseArena lets the arena be filled again from its start once every
// closed segment is written elsewhere (a plan spilled to a file): the open
// segment's bytes move to the start, or out of the arena.
func (b *planBuilder) reuseArena() {
	switch {
	case b.metaStart >= 0:
		b.arena = b.arena[:copy(b.arena, b.arena[b.metaStart:])]
		b.metaStart = 0
		return
	case b.run != nil:
		b.run.attrs = bytes.Clone(b.run.attrs)
		b.run.ref.Extent.Inline = bytes.Clone(b.run.ref.Extent.Inline)
	}
	b.arena = b.arena[:0]
}

func (b *planBuilder) finish() *plan {
	b.closeRun()
	b.closeMeta()
	return &plan{enc: b.enc, read: b.read, segs: b.segs, size: b.off, whole: true}
}
