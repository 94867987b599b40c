package sendgen

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"sendfs/btrfsread"
)

// OutputVersion is part of every CacheKey. Bump it whenever the bytes the
// engine or the encoder produce for the same input could change, so that
// sizes cached by older builds are not trusted.
const OutputVersion = 2

// Options select what the stream contains. The zero value is the kernel's
// default: protocol 1.
type Options struct {
	// Protocol is the stream version (only 1 for now; 0 means 1).
	Protocol int
	// AllowWritable accepts a writable child or parent (for images that are
	// not mounted anywhere).
	AllowWritable bool
}

// protocol is the effective stream version.
func (o Options) protocol() int {
	if o.Protocol == 0 {
		return 1
	}
	return o.Protocol
}

// Stream is one send stream: child, incremental from parent when parent is
// not nil. It is safe for concurrent use.
type Stream struct {
	// pairMu guards child and parent, which a refresh moves to a newer
	// view of a live filesystem (refresh.go). Their names stay those of
	// the first view: they are part of the bytes.
	pairMu        sync.Mutex
	child, parent *btrfsread.Subvolume
	key           string // CacheKey, fixed when the stream is described
	enc           encoder
	// gen runs the engine into out; tests replace it with a synthetic
	// command sequence.
	gen func(ctx context.Context, out emitter) error
	// read materializes a DataRef (readData; tests substitute patterns).
	read func(ref *DataRef, p []byte) error

	sizeMu sync.Mutex
	size   int64 // -1 until known

	planMu sync.Mutex
	plan   *plan // nil until built
}

// NewStream checks the pair and describes its stream; it generates nothing.
func NewStream(child, parent *btrfsread.Subvolume, opts Options) (*Stream, error) {
	if child == nil {
		return nil, errors.New("sendgen: no subvolume to send")
	}
	if p := opts.protocol(); p != 1 {
		return nil, fmt.Errorf("sendgen: send stream protocol %d is not supported (only 1)", p)
	}
	if !child.ReadOnly() && !opts.AllowWritable {
		return nil, fmt.Errorf("sendgen: subvolume %s is not read-only (send a read-only snapshot, or allow writable subvolumes for an image that is not mounted)", subvolName(child))
	}
	if parent != nil && parent.FS() != child.FS() && parent.FS().SameFilesystem(child.FS()) {
		// Two views of one live filesystem: read both at the newest.
		var err error
		if child, parent, err = atView(child, parent, child.FS().Latest()); err != nil {
			return nil, err
		}
	}
	if parent != nil {
		switch {
		case parent == child || parent.FS() == child.FS() && parent.ID == child.ID:
			return nil, fmt.Errorf("sendgen: subvolume %s cannot be its own parent", subvolName(child))
		case parent.FS() != child.FS():
			return nil, fmt.Errorf("sendgen: parent %s is not on the same filesystem as %s", subvolName(parent), subvolName(child))
		case !parent.ReadOnly() && !opts.AllowWritable:
			return nil, fmt.Errorf("sendgen: parent subvolume %s is not read-only (use a read-only snapshot, or allow writable subvolumes for an image that is not mounted)", subvolName(parent))
		}
	}
	s := &Stream{child: child, parent: parent, enc: encoder{proto: opts.protocol()}, read: readData, size: -1}
	s.key = cacheKey(child, parent, opts)
	s.gen = func(ctx context.Context, out emitter) error {
		child, parent := s.pair()
		return run(ctx, child, parent, opts, out)
	}
	return s, nil
}

// subvolName names a subvolume in messages.
func subvolName(sv *btrfsread.Subvolume) string {
	if sv.Path == "" {
		return fmt.Sprintf("<top level> (id %d)", sv.ID)
	}
	return fmt.Sprintf("%q (id %d)", sv.Path, sv.ID)
}

// Size returns the exact length of the stream in bytes, computed without
// reading file data (and remembered).
func (s *Stream) Size(ctx context.Context) (int64, error) {
	s.sizeMu.Lock()
	defer s.sizeMu.Unlock()
	if s.size >= 0 {
		return s.size, nil
	}
	var c counter
	err := s.withRefresh(func() error {
		c = counter{enc: s.enc, n: int64(streamHeaderLen)}
		return s.runChecked(ctx, &c)
	})
	if err != nil {
		return 0, err
	}
	s.size = c.n
	return c.n, nil
}

// knownSize is the size if already known, else -1.
func (s *Stream) knownSize() int64 {
	s.sizeMu.Lock()
	defer s.sizeMu.Unlock()
	return s.size
}

// learnSize remembers a size found by a pass that generated the whole stream.
func (s *Stream) learnSize(n int64) {
	s.sizeMu.Lock()
	s.size = n
	s.sizeMu.Unlock()
}

// counter is the counting sink: the encoder's lengths, no data.
type counter struct {
	enc encoder
	n   int64
}

func (c *counter) emit(cmd *Command) error {
	c.n += c.enc.commandLen(cmd)
	return nil
}

// runChecked runs the engine into out, passing every command through a
// checker first, and fails unless the stream ended properly.
func (s *Stream) runChecked(ctx context.Context, out emitter) error {
	ck := &checker{enc: s.enc, ctx: ctx, next: out}
	if err := s.gen(ctx, ck); err != nil {
		return err
	}
	return ck.finish()
}

// CacheKey identifies the stream's bytes: the same key always means the same
// bytes. It is fixed when the stream is described.
func (s *Stream) CacheKey() string { return s.key }

// cacheKey is built from everything that shapes the bytes: the output
// version of this build, both subvolumes as the stream names them, and the
// options. An option that changes the bytes must be added to Options.key.
func cacheKey(child, parent *btrfsread.Subvolume, opts Options) string {
	p := "full"
	if parent != nil {
		p = subvolKey(parent)
	}
	return fmt.Sprintf("sendfs-stream/%d child=%s parent=%s %s", OutputVersion, subvolKey(child), p, opts.key())
}

// key lists the options that change the stream's bytes (AllowWritable
// does not: it only accepts more subvolumes).
func (o Options) key() string {
	return fmt.Sprintf("proto=%d", o.protocol())
}

// subvolKey names a subvolume's exact state: its name as SUBVOL and
// SNAPSHOT carry it (a rename changes it), the identities a receiver sees,
// and the transids (a read-only snapshot keeps them; a writable one changes
// them when written).
func subvolKey(sv *btrfsread.Subvolume) string {
	r := &sv.Root
	return fmt.Sprintf("%q:%x:%x:%d:%d:%d", sv.Name, r.UUID, r.ReceivedUUID, r.Generation, r.CTransid, r.STransid)
}

// checker sits between the engine and a sink: it enforces the stream's
// shape (begins with SUBVOL or SNAPSHOT, nothing after END, END present),
// the encoder's limits and cancellation, so that no sink can produce a
// stream that looks complete but is not.
type checker struct {
	enc   encoder
	ctx   context.Context
	next  emitter
	count int
	ended bool
}

// ctxCheckEvery bounds how many commands pass between cancellation checks.
const ctxCheckEvery = 256

func (k *checker) emit(c *Command) error {
	if k.count%ctxCheckEvery == 0 {
		if err := context.Cause(k.ctx); err != nil {
			return err
		}
	}
	switch {
	case k.ended:
		return fmt.Errorf("sendgen: engine emitted command %d after END", c.Cmd)
	case k.count == 0 && c.Cmd != CmdSubvol && c.Cmd != CmdSnapshot:
		return fmt.Errorf("sendgen: stream starts with command %d instead of SUBVOL or SNAPSHOT", c.Cmd)
	}
	if err := k.enc.check(c); err != nil {
		return err
	}
	k.count++
	k.ended = c.Cmd == CmdEnd
	return k.next.emit(c)
}

func (k *checker) finish() error {
	if !k.ended {
		return fmt.Errorf("sendgen: engine stopped after %d commands without END", k.count)
	}
	return nil
}
