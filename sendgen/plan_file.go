package sendgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"

	"sendfs/btrfsread"
	"sendfs/internal/lru"
)

// Plans kept across mounts. No engine pass can start in the middle of a
// stream: every command depends on the state left by all those before it
// (paths, orphans, the namespace check), so writeStream can only start at
// an offset by running the engine from the start without data. What a
// jump needs is the plan itself, so the whole plan is what is kept, in a
// file of the cache directory under the stream's cache key: written on
// the way by the counting pass that finds the stream's size (planSpill,
// a page at a time), or when a build for a Reader completes. From then
// on, on this mount and the next, every Reader of the stream is served
// from the file: a jump anywhere, and parallel range readers (rclone's
// streams), with no engine pass at all.
//
// The file is read lazily: opening it reads the header and the page index
// (a few KiB), and a read decodes only the pages it touches. Each page is
// an S2 block (fast enough to keep the counting pass that writes it
// close to its speed) of whole segments with a CRC-32C; the header carries the
// key, the trailer the stream's length, and the index its own CRC. A data
// run records the generation of its subvolume where it was planned: a
// page read at another generation (a live mount that followed a balance)
// does not check out, since the extents it names may have moved. A file that is
// foreign, truncated, of another format version, of another key, of
// another length than the stream's known size, or whose page fails its
// checks is ignored with a log line and removed, and the plan is built
// again: a cached plan is never served unless it checks out, and what it
// serves is regenerated data between metadata the engine encoded.
//
// Layout, integers little-endian:
//
//	header   planMagic, u32 key length, key, u32 CRC of the above
//	pages    S2 blocks
//	index    per page: u64 stream offset, u64 file offset, u32 length, u32 CRC
//	trailer  u64 stream length, u64 index offset, u32 pages, u32 CRC of the
//	         index and the trailer before it
const planMagic = "sendfs stream plan v2\n"

const (
	// planPageBytes: segments are cut into pages of about this many
	// bytes before compression.
	planPageBytes = 64 << 10
	// planFileMax: a plan whose file would be bigger is not kept.
	planFileMax = 256 << 20
	// planCacheMax bounds the plan files of the cache directory together:
	// past it, the least recently used are removed.
	planCacheMax = 1 << 30
	// planPagesKept bounds the decoded pages a plan file keeps in memory.
	planPagesKept  = 4 << 20
	planTrailerLen = 24
	planIndexEntry = 24
	// staleTemp: a temporary file not written for this long was left by a
	// process that died.
	staleTemp = 24 * time.Hour
)

// planPageMax bounds a page's decoded bytes: a page ends after the
// segment that takes it past planPageBytes, and a segment holds at most
// an arena.
const planPageMax = planPageBytes + 2*maxArena

// PlanCache keeps the plans of streams in a directory across mounts; see
// UsePlanCache.
type PlanCache struct {
	dir string
	log *slog.Logger
	max int64      // bytes of all plan files together: planCacheMax
	mu  sync.Mutex // one rename and eviction at a time
	// warned: a write failed already (logged once)
	warned atomic.Bool
}

// NewPlanCache keeps plans under dir/plans, logging to log the files it
// ignores and a failure to write.
func NewPlanCache(dir string, log *slog.Logger) *PlanCache {
	return &PlanCache{dir: filepath.Join(dir, "plans"), log: log, max: planCacheMax}
}

// UsePlanCache makes the stream's readers take its plan from c when it is
// there, and keeps it in c once built: by a Reader that jumped, or on the
// way by the counting pass of Size. Call it before the first Reader.
func (s *Stream) UsePlanCache(c *PlanCache) { s.plans = c }

func (c *PlanCache) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(c.dir, hex.EncodeToString(sum[:16])+".plan")
}

// planIndex is one page of a plan file.
type planIndex struct {
	off     int64 // stream offset of the page's first segment
	fileOff int64
	n       uint32
	crc     uint32
}

// planFile is a whole plan served from a file: its pages are read and
// decoded on demand, a few kept decoded.
type planFile struct {
	f       *os.File // kept open: a newer file may replace it under its name
	path    string
	cache   *PlanCache
	size    int64
	index   []planIndex
	enc     encoder
	read    func(*DataRef, []byte) error
	subvol  func(id uint64) (*btrfsread.Subvolume, bool)
	decoded *lru.Cache[int, *plan]
	// rebuild serves a fill from a plan built again, once a page failed.
	rebuild func(p []byte, off int64, help bool) error
	bad     atomic.Bool // a page failed: the file is not used any more
}

// errPlanFile marks a plan file that does not check out.
var errPlanFile = errors.New("sendgen: cached stream plan")

func planFileErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errPlanFile}, args...)...)
}

// load opens the plan file of s, or returns nil when there is none or it
// does not check out (logged and removed).
func (c *PlanCache) load(ctx context.Context, s *Stream) *plan {
	path := c.path(s.key)
	f, err := os.Open(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("cached stream plan not readable; it is built again", "file", path, "err", err)
		}
		return nil
	}
	pf, err := openPlanFile(f, s.key)
	if err == nil {
		if n := s.knownSize(); n >= 0 && n != pf.size {
			err = planFileErr("it is for a stream of %d bytes, not %d", pf.size, n)
		}
	}
	if err != nil {
		c.reject(path, f, err)
		f.Close()
		return nil
	}
	pf.path, pf.cache = path, c
	pf.enc, pf.read, pf.subvol = s.enc, s.read, s.subvolByID
	pf.rebuild = func(p []byte, off int64, help bool) error {
		return s.fillRebuilt(ctx, p, off, help)
	}
	now := time.Now()
	_ = os.Chtimes(path, now, now) // most recently used: evicted last
	return &plan{enc: s.enc, read: s.read, size: pf.size, whole: true, file: pf}
}

// reject logs why the plan file f at path is not used and removes it,
// unless path names another file by now (kept since by another stream).
func (c *PlanCache) reject(path string, f *os.File, err error) {
	c.log.Warn("cached stream plan ignored; it is built again", "file", path, "err", err)
	named, err1 := os.Stat(path)
	opened, err2 := f.Stat()
	if err1 == nil && err2 == nil && os.SameFile(named, opened) {
		os.Remove(path)
	}
}

// openPlanFile reads and checks the header, index and trailer of f.
func openPlanFile(f *os.File, key string) (*planFile, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	flen := st.Size()
	fixed := int64(len(planMagic) + 4)
	hdrLen := fixed + int64(len(key)) + 4
	if flen < hdrLen+planTrailerLen {
		return nil, planFileErr("the file is truncated (%d bytes)", flen)
	}
	hdr := make([]byte, hdrLen)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, err
	}
	switch {
	case string(hdr[:len(planMagic)]) != planMagic:
		return nil, planFileErr("not a plan file of this version")
	case binary.LittleEndian.Uint32(hdr[len(planMagic):]) != uint32(len(key)) || string(hdr[fixed:fixed+int64(len(key))]) != key:
		return nil, planFileErr("it is for another stream")
	case crc32.Checksum(hdr[:hdrLen-4], castagnoli) != binary.LittleEndian.Uint32(hdr[hdrLen-4:]):
		return nil, planFileErr("its header is corrupt")
	}
	var tr [planTrailerLen]byte
	if _, err := f.ReadAt(tr[:], flen-planTrailerLen); err != nil {
		return nil, err
	}
	size := int64(binary.LittleEndian.Uint64(tr[:]))
	indexOff := int64(binary.LittleEndian.Uint64(tr[8:]))
	pages := int64(binary.LittleEndian.Uint32(tr[16:]))
	if pages == 0 || indexOff < hdrLen || indexOff+pages*planIndexEntry != flen-planTrailerLen {
		return nil, planFileErr("the file is truncated or corrupt (%d bytes)", flen)
	}
	raw := make([]byte, pages*planIndexEntry)
	if _, err := f.ReadAt(raw, indexOff); err != nil {
		return nil, err
	}
	if crc32.Update(crc32.Checksum(raw, castagnoli), castagnoli, tr[:20]) != binary.LittleEndian.Uint32(tr[20:]) {
		return nil, planFileErr("its index is corrupt")
	}
	pf := &planFile{f: f, size: size, index: make([]planIndex, pages)}
	pos := hdrLen
	for i := range pf.index {
		e := raw[i*planIndexEntry:]
		x := planIndex{off: int64(binary.LittleEndian.Uint64(e)), fileOff: int64(binary.LittleEndian.Uint64(e[8:])), n: binary.LittleEndian.Uint32(e[16:]), crc: binary.LittleEndian.Uint32(e[20:])}
		if x.fileOff != pos || (i == 0) != (x.off == 0) || i > 0 && x.off <= pf.index[i-1].off || x.off >= size {
			return nil, planFileErr("its index is inconsistent at page %d", i)
		}
		pos += int64(x.n)
		pf.index[i] = x
	}
	if pos != indexOff {
		return nil, planFileErr("its index does not match its pages")
	}
	pf.decoded = lru.New[int](planPagesKept, func(p *plan) int64 { return p.bytes })
	return pf, nil
}

// fill is plan.fill for a plan in a file: page by page. A page that does
// not check out makes the whole fill come from a plan built again.
func (f *planFile) fill(p []byte, off int64, help bool) error {
	end := off + int64(len(p))
	i := sort.Search(len(f.index), func(i int) bool { return f.index[i].off > off }) - 1
	for ; i < len(f.index) && f.index[i].off < end; i++ {
		if f.bad.Load() {
			return f.rebuild(p, off, help)
		}
		pg, err := f.decoded.Get(i, func() (*plan, error) { return f.page(i) })
		if err != nil {
			if f.bad.CompareAndSwap(false, true) {
				f.cache.reject(f.path, f.f, err)
			}
			return f.rebuild(p, off, help)
		}
		from, to := max(off, f.index[i].off), min(end, pg.size)
		if err := pg.fill(p[from-off:to-off], from, help); err != nil {
			return err
		}
	}
	return nil
}

// page reads and decodes page i, a plan of the stream's bytes from the
// page's offset to the next page's.
func (f *planFile) page(i int) (*plan, error) {
	x := f.index[i]
	end := f.size
	if i+1 < len(f.index) {
		end = f.index[i+1].off
	}
	z := make([]byte, x.n)
	if _, err := f.f.ReadAt(z, x.fileOff); err != nil {
		return nil, fmt.Errorf("%w: page %d: %w", errPlanFile, i, err)
	}
	if crc32.Checksum(z, castagnoli) != x.crc {
		return nil, planFileErr("page %d is corrupt", i)
	}
	n, err := s2.DecodedLen(z)
	if err != nil || n > planPageMax {
		return nil, planFileErr("page %d is corrupt", i)
	}
	raw, err := s2.Decode(make([]byte, n), z)
	if err != nil {
		return nil, planFileErr("page %d: %v", i, err)
	}
	d := pageDecoder{b: raw}
	segs, err := d.segments(x.off, end, f.subvol)
	if err != nil {
		return nil, planFileErr("page %d: %v", i, err)
	}
	return &plan{enc: f.enc, read: f.read, segs: segs, size: end, bytes: int64(len(raw)) + int64(len(segs))*64}, nil
}

// fillRebuilt serves a fill from a plan built again, after the cached
// plan failed: the stream forgets the failed plan.
func (s *Stream) fillRebuilt(ctx context.Context, p []byte, off int64, help bool) error {
	s.planMu.Lock()
	if b := s.build; b != nil {
		if pf := b.plan().file; pf != nil && pf.bad.Load() {
			s.build = nil
		}
	}
	s.planMu.Unlock()
	b := s.attachBuild(ctx)
	defer s.detachBuild(b)
	pl, err := b.covering(off + int64(len(p)))
	switch {
	case err != nil:
		return err
	case off+int64(len(p)) > pl.size:
		return fmt.Errorf("sendgen: stream of %s ends at %d, before the end of its cached plan", s.child, pl.size)
	}
	return pl.fill(p, off, help)
}

// checkPlanSize drops the stream's cached plan if the stream is not n
// bytes long by it: its readers go on from a plan built again.
func (s *Stream) checkPlanSize(n int64) {
	s.planMu.Lock()
	defer s.planMu.Unlock()
	if s.build == nil {
		return
	}
	if pf := s.build.plan().file; pf != nil && pf.size != n && pf.bad.CompareAndSwap(false, true) {
		s.plans.reject(pf.path, pf.f, planFileErr("it is for a stream of %d bytes, not %d", pf.size, n))
		s.build = nil
	}
}

// subvolByID is the stream's subvolume with the given id (data commands of
// a plan file name theirs by id), at the stream's current view.
func (s *Stream) subvolByID(id uint64) (*btrfsread.Subvolume, bool) {
	child, parent, clones := s.pair()
	for _, sv := range append([]*btrfsread.Subvolume{child, parent}, clones...) {
		if sv != nil && sv.ID == id {
			return sv, true
		}
	}
	return nil, false
}

// keep writes the whole plan p of s to its file and returns the plan read
// back from there, or nil if it is not kept (too big, or not written:
// logged).
func (c *PlanCache) keep(ctx context.Context, s *Stream, p *plan) *plan {
	if kept := c.load(ctx, s); kept != nil {
		return kept // by a counting pass meanwhile
	}
	w, err := c.create(s.key)
	if err == nil {
		err = w.add(p.segs)
		err = w.finish(err, p.size)
	}
	if err != nil {
		c.failed(err)
		return nil
	}
	return c.load(ctx, s)
}

// failed logs that a plan was not written (err), the first time only,
// unless it was only too big: a cache that cannot be written only costs
// passes.
func (c *PlanCache) failed(err error) {
	if err != nil && !errors.Is(err, errPlanTooBig) && c.warned.CompareAndSwap(false, true) {
		c.log.Warn("stream plan not written to the cache; plans are built in memory when needed", "dir", c.dir, "err", err)
	}
}

var errPlanTooBig = errors.New("sendgen: plan too big to keep")

// planWriter writes a plan file as its segments come, to a temporary file
// that finish renames to the key's: pages of whole segments, then the
// index and the trailer.
type planWriter struct {
	c     *PlanCache
	key   string
	f     *os.File
	w     countingWriter
	index []byte
	pages int
	body  []byte // segments of the page being filled
	nsegs int
	first int64 // stream offset of its first segment
	raw   []byte
	z     []byte
}

// create starts the file of key.
func (c *PlanCache) create(key string) (*planWriter, error) {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return nil, err
	}
	pw := &planWriter{c: c, key: key, f: f, w: countingWriter{w: bufio.NewWriterSize(f, 256<<10)}}
	hdr := binary.LittleEndian.AppendUint32([]byte(planMagic), uint32(len(key)))
	hdr = append(hdr, key...)
	pw.w.write(binary.LittleEndian.AppendUint32(hdr, crc32.Checksum(hdr, castagnoli)))
	return pw, nil
}

// add appends whole segments, in stream order.
func (pw *planWriter) add(segs []segment) error {
	for i := range segs {
		if pw.nsegs == 0 {
			pw.first = segs[i].off
		}
		pw.body = appendSegment(pw.body, &segs[i], pw.first)
		if pw.nsegs++; len(pw.body) >= planPageBytes {
			pw.page()
			if pw.w.n > planFileMax {
				return errPlanTooBig
			}
		}
	}
	return pw.w.err
}

// page writes the page being filled.
func (pw *planWriter) page() {
	pw.raw = append(binary.AppendUvarint(pw.raw[:0], uint64(pw.nsegs)), pw.body...)
	pw.z = s2.Encode(pw.z[:cap(pw.z)], pw.raw)
	pw.index = binary.LittleEndian.AppendUint64(pw.index, uint64(pw.first))
	pw.index = binary.LittleEndian.AppendUint64(pw.index, uint64(pw.w.n))
	pw.index = binary.LittleEndian.AppendUint32(pw.index, uint32(len(pw.z)))
	pw.index = binary.LittleEndian.AppendUint32(pw.index, crc32.Checksum(pw.z, castagnoli))
	pw.w.write(pw.z)
	pw.pages++
	pw.body, pw.nsegs = pw.body[:0], 0
}

// finish ends the file of a stream of size bytes and renames it to the
// key's, making room in the cache, unless err (the pass's) is set; a file
// not renamed is removed.
func (pw *planWriter) finish(err error, size int64) error {
	if err == nil {
		if pw.nsegs > 0 {
			pw.page()
		}
		tr := binary.LittleEndian.AppendUint64(nil, uint64(size))
		tr = binary.LittleEndian.AppendUint64(tr, uint64(pw.w.n))
		tr = binary.LittleEndian.AppendUint32(tr, uint32(pw.pages))
		sum := crc32.Update(crc32.Checksum(pw.index, castagnoli), castagnoli, tr)
		pw.w.write(pw.index)
		pw.w.write(binary.LittleEndian.AppendUint32(tr, sum))
		err = pw.w.err
	}
	if err == nil {
		err = pw.w.w.Flush()
	}
	if cerr := pw.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		pw.c.mu.Lock()
		defer pw.c.mu.Unlock()
		if err = os.Rename(pw.f.Name(), pw.c.path(pw.key)); err == nil {
			pw.c.evict()
			return nil
		}
	}
	os.Remove(pw.f.Name())
	return err
}

// countingWriter writes through a bufio.Writer, counting bytes and keeping
// the first error.
type countingWriter struct {
	w   *bufio.Writer
	n   int64
	err error
}

func (w *countingWriter) write(p []byte) {
	if w.err == nil {
		_, w.err = w.w.Write(p)
		w.n += int64(len(p))
	}
}

// planSpill is the emitter of a counting pass that writes the stream's
// plan to the cache on the way, a page at a time: its memory is a page and
// the builder's arena, whatever the stream. A plan too big to keep is
// dropped and the pass only counts.
type planSpill struct {
	b *planBuilder
	w *planWriter // nil once dropped
}

// spill returns the emitter of a counting pass of s that keeps its plan,
// or nil when c is nil, the plan is kept already or no file can be made.
func (c *PlanCache) spill(s *Stream) *planSpill {
	if c == nil {
		return nil
	}
	if _, err := os.Stat(c.path(s.key)); err == nil {
		return nil
	}
	w, err := c.create(s.key)
	if err != nil {
		c.failed(err)
		return nil
	}
	return &planSpill{b: newPlanBuilder(s.enc, s.read, nil), w: w}
}

// spillEvery: segments written at a time.
const spillEvery = 256

func (sp *planSpill) emit(c *Command) error {
	if sp.w == nil {
		sp.b.off += sp.b.enc.commandLen(c)
		return nil
	}
	sp.b.add(c)
	if len(sp.b.segs) >= spillEvery {
		sp.flush()
	}
	return nil
}

// flush writes the finished segments, or drops the plan if it cannot be
// kept.
func (sp *planSpill) flush() {
	if err := sp.w.add(sp.b.segs); err != nil {
		sp.drop(err)
		return
	}
	clear(sp.b.segs)
	sp.b.segs = sp.b.segs[:0]
	sp.b.reuseArena()
}

func (sp *planSpill) drop(err error) {
	sp.w.c.failed(sp.w.finish(err, 0))
	sp.w = nil
	sp.b.closeRun()
	sp.b.closeMeta()
	sp.b.segs, sp.b.arena = nil, nil
}

// finish ends the pass (err is its result) and returns the stream's
// length; the plan is kept if the pass succeeded.
func (sp *planSpill) finish(err error) (int64, error) {
	if sp.w != nil {
		if err == nil {
			sp.b.closeRun()
			sp.b.closeMeta()
			sp.flush()
		}
		if sp.w != nil {
			// A failed pass is its caller's error, not the cache's.
			if werr := sp.w.finish(err, sp.b.off); err == nil {
				sp.w.c.failed(werr)
			}
		}
	}
	return sp.b.off, err
}

// evict removes the least recently used plan files while they take more
// than c.max together, and temporary files left behind.
func (c *PlanCache) evict() {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	type file struct {
		name string
		size int64
		mod  time.Time
	}
	var files []file
	var total int64
	for _, e := range entries {
		info, err := e.Info()
		switch {
		case err != nil:
		case strings.HasPrefix(e.Name(), ".tmp-"):
			if time.Since(info.ModTime()) > staleTemp {
				os.Remove(filepath.Join(c.dir, e.Name())) // left by a process that died
			}
		case strings.HasSuffix(e.Name(), ".plan"):
			files = append(files, file{e.Name(), info.Size(), info.ModTime()})
			total += info.Size()
		}
	}
	slices.SortFunc(files, func(a, b file) int { return a.mod.Compare(b.mod) })
	for _, f := range files {
		if total <= c.max {
			return
		}
		if os.Remove(filepath.Join(c.dir, f.name)) == nil {
			total -= f.size
		}
	}
}

// A page is the count of its segments, then the segments, each: the
// offset from the page's start, a kind (0 metadata, 1 data run) and then
// the metadata bytes, or the run's fields.
func appendSegment(dst []byte, seg *segment, start int64) []byte {
	dst = binary.AppendUvarint(dst, uint64(seg.off-start))
	if seg.run == nil {
		dst = append(dst, 0)
		dst = binary.AppendUvarint(dst, uint64(len(seg.meta)))
		return append(dst, seg.meta...)
	}
	r := seg.run
	ref, e := &r.ref, &r.ref.Extent
	var id, gen uint64
	if ref.Subvol != nil {
		id, gen = ref.Subvol.ID, ref.Subvol.Root.Generation
	}
	var flags byte
	for i, set := range []bool{ref.Zero, ref.Encoded, e.Inline != nil} {
		if set {
			flags |= 1 << i
		}
	}
	dst = append(dst, 1, flags)
	for _, v := range []uint64{uint64(r.cmd), uint64(r.foPos + 1), uint64(r.step), uint64(r.n), uint64(r.lastLen), uint64(r.cmdLen), uint64(r.lastCmdLen),
		id, gen, ref.Ino, ref.FileOffset, ref.Offset, e.Generation, e.RamBytes, uint64(e.Compression), uint64(e.Type), e.DiskBytenr, e.DiskNumBytes, e.Offset, e.NumBytes} {
		dst = binary.AppendUvarint(dst, v)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.attrs)))
	dst = append(dst, r.attrs...)
	if e.Inline != nil {
		dst = binary.AppendUvarint(dst, uint64(len(e.Inline)))
		dst = append(dst, e.Inline...)
	}
	return dst
}

// pageDecoder reads a page; the first error sticks.
type pageDecoder struct {
	b   []byte
	err error
}

func (d *pageDecoder) uvarint(limit uint64) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > limit {
		d.fail("bad number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *pageDecoder) bytes(limit uint64) []byte {
	n := d.uvarint(limit)
	if n > uint64(len(d.b)) {
		d.fail("truncated")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *pageDecoder) fail(msg string) {
	if d.err == nil {
		d.err = errors.New(msg)
	}
	d.b = nil
}

// segments decodes the page's segments, which must cover [start, end)
// exactly, with data runs that rebuild commands of their recorded lengths.
func (d *pageDecoder) segments(start, end int64, subvol func(uint64) (*btrfsread.Subvolume, bool)) ([]segment, error) {
	count := d.uvarint(uint64(len(d.b)))
	if count == 0 {
		return nil, errors.New("bad segment count")
	}
	segs := make([]segment, 0, count)
	at := start
	const maxLen = 1 << 40
	for range count {
		seg := segment{off: start + int64(d.uvarint(maxLen))}
		kind := d.uvarint(1)
		if d.err == nil && seg.off != at {
			return nil, fmt.Errorf("segment at %d where %d was expected", seg.off, at)
		}
		if kind == 0 {
			seg.meta = d.bytes(maxLen)
			at += int64(len(seg.meta))
			if d.err == nil && len(seg.meta) == 0 {
				d.fail("empty metadata segment")
			}
			segs = append(segs, seg)
			continue
		}
		r, err := d.run(subvol)
		if err != nil {
			return nil, err
		}
		seg.run = r
		at += r.cmdLen*int64(r.n-1) + r.lastCmdLen
		segs = append(segs, seg)
	}
	switch {
	case d.err != nil:
		return nil, d.err
	case len(d.b) != 0:
		return nil, errors.New("bytes after the last segment")
	case at != end:
		return nil, fmt.Errorf("segments end at %d, not %d", at, end)
	}
	return segs, nil
}

// run decodes a data run and checks that its commands are whole: each
// longer than its data, the FILE_OFFSET value inside the attributes.
func (d *pageDecoder) run(subvol func(uint64) (*btrfsread.Subvolume, bool)) (*dataRun, error) {
	if len(d.b) == 0 {
		return nil, errors.New("truncated")
	}
	flags := d.b[0]
	d.b = d.b[1:]
	const u32, u64 = 1<<32 - 1, 1<<64 - 1
	r := &dataRun{}
	r.cmd = Cmd(d.uvarint(1<<16 - 1))
	r.foPos = int(d.uvarint(1<<16)) - 1
	r.step = uint32(d.uvarint(u32))
	r.n = int(d.uvarint(u32))
	r.lastLen = uint32(d.uvarint(u32))
	r.cmdLen = int64(d.uvarint(u32))
	r.lastCmdLen = int64(d.uvarint(u32))
	ref, e := &r.ref, &r.ref.Extent
	id, gen := d.uvarint(u64), d.uvarint(u64)
	ref.Ino, ref.FileOffset, ref.Offset = d.uvarint(u64), d.uvarint(u64), d.uvarint(u64)
	e.Generation, e.RamBytes = d.uvarint(u64), d.uvarint(u64)
	e.Compression, e.Type = uint8(d.uvarint(255)), uint8(d.uvarint(255))
	e.DiskBytenr, e.DiskNumBytes, e.Offset, e.NumBytes = d.uvarint(u64), d.uvarint(u64), d.uvarint(u64), d.uvarint(u64)
	r.attrs = d.bytes(1 << 16)
	if flags&4 != 0 {
		e.Inline = bytes.Clone(d.bytes(1 << 20))
	}
	ref.Zero, ref.Encoded, ref.Len = flags&1 != 0, flags&2 != 0, r.step
	switch {
	case d.err != nil:
		return nil, d.err
	case flags > 7:
		return nil, errors.New("bad data run flags")
	case r.n == 0 || r.step == 0 || r.lastLen == 0 || r.lastLen > r.step || r.n == 1 && r.lastLen != r.step:
		return nil, errors.New("bad data run lengths")
	case r.cmdLen <= int64(r.step) || r.lastCmdLen <= int64(r.lastLen):
		return nil, errors.New("data run commands shorter than their data")
	case r.foPos < -1 || r.foPos+8 > len(r.attrs) || r.n > 1 && r.foPos < 0:
		return nil, errors.New("bad FILE_OFFSET position")
	}
	if id != 0 {
		sv, ok := subvol(id)
		switch {
		case !ok:
			return nil, fmt.Errorf("data of subvolume %d, which the stream does not read", id)
		case sv.Root.Generation != gen:
			// The key holds the generation the stream was first
			// described at; a live mount follows newer commits, where a
			// balance may have moved the extents a run points to.
			return nil, fmt.Errorf("data placed at generation %d of subvolume %d, which is at generation %d now (its extents may have moved)", gen, id, sv.Root.Generation)
		}
		ref.Subvol = sv
	}
	return r, nil
}
