package sendgen

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// materializeSlots bounds the goroutines regenerating data commands for all
// readers besides the reading goroutines themselves: reading and
// decompressing is CPU work.
var materializeSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// fill writes the stream's bytes [off, off+len(p)) into p: metadata copied
// from the plan, data commands regenerated straight into p when they lie
// whole inside it. With help, goroutines from free slots regenerate data
// commands alongside the caller.
func (pl *plan) fill(p []byte, off int64, help bool) error {
	if pl.file != nil {
		return pl.file.fill(p, off, help)
	}
	f := filler{pl: pl, p: p, off: off}
	end := off + int64(len(p))
	pl.visit(off, end, func(si, i int, start int64, seg *segment) {
		if seg.run == nil {
			from := max(off, start)
			copy(p[from-off:], seg.meta[from-start:])
		} else {
			f.cmds = append(f.cmds, cmdAt{si: si, i: i, start: start})
		}
	})
	if help {
		f.help()
	}
	f.work()
	f.helpers.Wait()
	return f.err
}

// cmdAt is one data command and where it starts in the stream.
type cmdAt struct {
	si, i int
	start int64
}

// filler regenerates the data commands of one fill; whoever works takes
// the next command not yet taken.
type filler struct {
	pl      *plan
	p       []byte
	off     int64
	cmds    []cmdAt
	next    atomic.Int64
	helpers sync.WaitGroup
	errOnce sync.Once
	err     error
}

// help starts goroutines, as many as free slots allow and commands can
// keep busy.
func (f *filler) help() {
	for range min(len(f.cmds)-1, cap(materializeSlots)) {
		select {
		case materializeSlots <- struct{}{}:
		default:
			return
		}
		f.helpers.Go(func() {
			defer func() { <-materializeSlots }()
			f.work()
		})
	}
}

// work regenerates commands until none is left. After an error the others
// are still done: the error is returned once all work has stopped.
func (f *filler) work() {
	for {
		k := int(f.next.Add(1) - 1)
		if k >= len(f.cmds) {
			return
		}
		if err := f.one(f.cmds[k]); err != nil {
			f.errOnce.Do(func() { f.err = err })
		}
	}
}

// one regenerates command c into its place in p: directly when it lies
// whole inside p, else through a pooled buffer from which its part is
// copied.
func (f *filler) one(c cmdAt) error {
	n := cmdLenAt(&f.pl.segs[c.si], c.i)
	end := f.off + int64(len(f.p))
	if c.start >= f.off && c.start+n <= end {
		dst := f.p[c.start-f.off : c.start-f.off+n]
		_, err := f.pl.encodeCmd(dst[:0:n], c.si, c.i)
		return err
	}
	buf := getBuf()
	defer putBuf(buf)
	cmd, err := f.pl.encodeCmd(*buf, c.si, c.i)
	*buf = cmd
	if err != nil {
		return err
	}
	from, to := max(f.off, c.start), min(end, c.start+n)
	copy(f.p[from-f.off:to-f.off], cmd[from-c.start:])
	return nil
}

// visit calls fn for every metadata segment and every data command that
// overlaps [off, end), in stream order, with where it starts.
func (pl *plan) visit(off, end int64, fn func(si, i int, start int64, seg *segment)) {
	for si := pl.find(off); si < len(pl.segs) && pl.segs[si].off < end; si++ {
		seg := &pl.segs[si]
		if seg.run == nil {
			fn(si, 0, seg.off, seg)
			continue
		}
		i, start := seg.run.locate(max(off, seg.off) - seg.off)
		for ; i < seg.run.n && seg.off+start < end; i++ {
			fn(si, i, seg.off+start, seg)
			start += seg.run.cmdLen
		}
	}
}

// cmdLenAt is the encoded length of command i of a data segment.
func cmdLenAt(seg *segment, i int) int64 {
	if i == seg.run.n-1 {
		return seg.run.lastCmdLen
	}
	return seg.run.cmdLen
}
