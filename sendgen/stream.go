package sendgen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"sendfs/btrfsread"
)

// formatVersion is part of every CacheKey. Bump it whenever the bytes the
// engine or the encoder produce for the same input change, so that cached
// sizes and plans from older builds are not trusted.
const formatVersion = 1

// Options select what the stream contains, as the kernel's send ioctl
// flags do. The zero value is the kernel's default: protocol 1, file data
// sent decompressed, no clone sources besides the parent.
type Options struct {
	// Protocol is the stream version, 1 or 2 (MaxProtocol); 0 means the
	// default: 1, or 2 with CompressedData.
	Protocol int
	// CompressedData sends compressed extents as stored (ENCODED_WRITE)
	// instead of decompressing them; it needs protocol 2.
	CompressedData bool
	// NoData sends UPDATE_EXTENT (offset and length only) instead of file
	// data: a stream that shows what changed but cannot be received into
	// a copy of the data.
	NoData bool
	// CloneSources are more snapshots the receiver has, from which data
	// may be cloned (btrfs send -c). The parent always is one.
	CloneSources []*btrfsread.Subvolume
	// AllowWritable accepts a writable child, parent or clone source (for
	// images that are not mounted anywhere).
	AllowWritable bool
}

// MaxProtocol is the highest stream version sendfs writes.
const MaxProtocol = 2

// HeaderLen is the length of a stream's header and EndLen that of the END
// command closing it: what `btrfs send -e` leaves out between the streams of
// several subvolumes to make them one.
const (
	HeaderLen = streamHeaderLen
	EndLen    = cmdHeaderLen
)

// protocol is the effective stream version.
func (o Options) protocol() int {
	switch {
	case o.Protocol != 0:
		return o.Protocol
	case o.CompressedData:
		return 2
	}
	return 1
}

// check rejects options no stream can have.
func (o Options) check() error {
	switch p := o.protocol(); {
	case p < 1 || p > MaxProtocol:
		return fmt.Errorf("sendgen: send stream protocol %d is not supported (1 to %d)", p, MaxProtocol)
	case o.CompressedData && p < 2:
		return fmt.Errorf("sendgen: compressed data needs protocol 2 or later (requested %d)", p)
	}
	return nil
}

// String is the canonical form of the options that change the stream's
// bytes, e.g. "proto=2 compressed-data clone=<uuid:gen:ctransid>,...": equal
// options give equal strings, whatever the order of the clone sources.
func (o Options) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "proto=%d", o.protocol())
	if o.CompressedData {
		b.WriteString(" compressed-data")
	}
	if o.NoData {
		b.WriteString(" no-data")
	}
	if len(o.CloneSources) > 0 {
		keys := make([]string, len(o.CloneSources))
		for i, sv := range o.CloneSources {
			keys[i] = subvolKey(sv)
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		b.WriteString(" clone=" + strings.Join(keys, ","))
	}
	return b.String()
}

// Stream is one send stream: child, incremental from parent when parent is
// not nil. It is safe for concurrent use.
type Stream struct {
	child, parent *btrfsread.Subvolume
	opts          Options
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
	if err := opts.check(); err != nil {
		return nil, err
	}
	if !child.ReadOnly() && !opts.AllowWritable {
		return nil, fmt.Errorf("sendgen: subvolume %s is not read-only (send a read-only snapshot, or allow writable subvolumes for an image that is not mounted)", subvolName(child))
	}
	others := opts.CloneSources
	if parent != nil {
		others = append([]*btrfsread.Subvolume{parent}, others...)
	}
	for i, sv := range others {
		role := "clone source"
		if parent != nil && i == 0 {
			role = "parent"
		}
		switch {
		case sv == nil:
			return nil, fmt.Errorf("sendgen: no %s subvolume", role)
		case sv.FS() != child.FS():
			return nil, fmt.Errorf("sendgen: %s %s is not on the same filesystem as %s", role, subvolName(sv), subvolName(child))
		case !sv.ReadOnly() && !opts.AllowWritable:
			return nil, fmt.Errorf("sendgen: %s subvolume %s is not read-only (use a read-only snapshot, or allow writable subvolumes for an image that is not mounted)", role, subvolName(sv))
		}
	}
	s := &Stream{child: child, parent: parent, opts: opts, enc: encoder{proto: opts.protocol()}, read: readData, size: -1}
	s.gen = func(ctx context.Context, out emitter) error {
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
	c := counter{enc: s.enc, n: int64(streamHeaderLen)}
	if err := s.runChecked(ctx, &c); err != nil {
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
// bytes (uuids, generations, options).
func (s *Stream) CacheKey() string {
	parent := "full"
	if s.parent != nil {
		parent = subvolKey(s.parent)
	}
	return fmt.Sprintf("sendfs-stream/%d child=%s parent=%s %s", formatVersion, subvolKey(s.child), parent, s.opts)
}

// subvolKey names a subvolume's exact state: a read-only snapshot keeps its
// generation and ctransid; a writable one changes them when written.
func subvolKey(sv *btrfsread.Subvolume) string {
	return fmt.Sprintf("%x:%d:%d", sv.Root.UUID, sv.Root.Generation, sv.Root.CTransid)
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
