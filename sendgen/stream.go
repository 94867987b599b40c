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

// OutputVersion is part of every CacheKey. Bump it whenever the bytes the
// engine or the encoder produce for the same input could change, so that
// sizes cached by older builds are not trusted.
const OutputVersion = 2

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
	// pairMu guards child, parent and clones, which a refresh moves to a
	// newer view of a live filesystem (refresh.go). Their names stay those
	// of the first view: they are part of the bytes.
	pairMu        sync.Mutex
	child, parent *btrfsread.Subvolume
	clones        []*btrfsread.Subvolume // opts.CloneSources, moved with the pair
	key           string                 // CacheKey, fixed when the stream is described
	enc           encoder
	// gen runs the engine into out; tests replace it with a synthetic
	// command sequence.
	gen func(ctx context.Context, out emitter) error
	// read materializes a DataRef (readData; tests substitute patterns).
	read func(ref *DataRef, p []byte) error

	// countMu makes concurrent Size calls count once. It is held across
	// the count, which may pause (WithPause); sizeMu is held only to read
	// or set size, so a Reader asking for the size never waits for a count.
	countMu sync.Mutex
	sizeMu  sync.Mutex
	size    int64 // -1 until known

	planMu sync.Mutex
	build  *planBuild // the plan, being built or built (plan_build.go); nil before the first Reader
	plans  *PlanCache // where whole plans are kept across mounts, nil if not (plan_file.go)
}

// NewStream checks the pair and describes its stream; it generates nothing.
func NewStream(child, parent *btrfsread.Subvolume, opts Options) (*Stream, error) {
	if child == nil {
		return nil, errors.New("sendgen: no subvolume to send")
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	if err := CheckSubvolume(child, RoleChild, opts.AllowWritable); err != nil {
		return nil, err
	}
	clones := opts.CloneSources
	if moved(child, parent, clones) {
		// Views of one live filesystem: read them all at the newest.
		var err error
		if child, parent, clones, err = atView(child, parent, clones, child.FS().Latest()); err != nil {
			return nil, err
		}
	}
	// The clone sources first: a parent chosen among them is refused as
	// the clone source the user gave.
	others := clones
	if parent != nil {
		others = append(slices.Clip(others), parent)
	}
	for i, sv := range others {
		role := RoleClone
		if i == len(clones) {
			role = RoleParent
		}
		if sv == nil {
			return nil, fmt.Errorf("sendgen: no %s", role)
		}
		if sv.FS() != child.FS() {
			return nil, fmt.Errorf("sendgen: %s %s is not on the same filesystem as %s", role, sv, child)
		}
		if err := CheckSubvolume(sv, role, opts.AllowWritable); err != nil {
			return nil, err
		}
	}
	s := &Stream{child: child, parent: parent, clones: clones, enc: encoder{proto: opts.protocol()}, read: readData, size: -1}
	s.key = cacheKey(child, parent, opts)
	s.gen = func(ctx context.Context, out emitter) error {
		child, parent, clones := s.pair()
		o := opts
		o.CloneSources = clones
		return run(ctx, child, parent, o, out)
	}
	return s, nil
}

// Role is what a subvolume is to a stream, as messages name it.
type Role string

// The roles of a stream's subvolumes.
const (
	RoleChild  Role = "subvolume"
	RoleParent Role = "parent subvolume"
	RoleClone  Role = "clone source"
)

// RefusedError is the refusal of a subvolume in its role: the top level
// (id 5), which no send takes (it has no name to be received under), or a
// writable subvolume without Options.AllowWritable (it could change while
// it is read).
type RefusedError struct {
	Subvol   *btrfsread.Subvolume
	Role     Role
	TopLevel bool // else: writable
}

func (e *RefusedError) Error() string {
	if e.TopLevel {
		return "sendgen: the top level (id 5) " + e.TopLevelCannot()
	}
	return fmt.Sprintf("sendgen: %s %s is not read-only (use a read-only snapshot, or allow writable subvolumes for an image that is not mounted)", e.Role, e.Subvol)
}

// TopLevelCannot says what the top level cannot be in the role: "cannot be
// sent", "cannot be a parent", "cannot be a clone source".
func (e *RefusedError) TopLevelCannot() string {
	switch e.Role {
	case RoleChild:
		return "cannot be sent"
	case RoleParent:
		return "cannot be a parent"
	}
	return "cannot be a " + string(e.Role)
}

// CheckSubvolume returns a *RefusedError if sv cannot be a stream's
// subvolume in role. NewStream checks every subvolume it is given with it;
// a caller that resolves several can check each as it resolves it.
func CheckSubvolume(sv *btrfsread.Subvolume, role Role, allowWritable bool) error {
	switch {
	case sv.ID == btrfsread.FSTreeID:
		return &RefusedError{Subvol: sv, Role: role, TopLevel: true}
	case !sv.ReadOnly() && !allowWritable:
		return &RefusedError{Subvol: sv, Role: role}
	}
	return nil
}

// Size returns the exact length of the stream in bytes, computed without
// reading file data (and remembered). A cached plan of another length is
// dropped.
func (s *Stream) Size(ctx context.Context) (int64, error) {
	n, err := s.countedSize(ctx)
	if err == nil {
		s.checkPlanSize(n)
	}
	return n, err
}

// countedSize is Size without the plan check.
func (s *Stream) countedSize(ctx context.Context) (int64, error) {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	if n := s.knownSize(); n >= 0 {
		return n, nil
	}
	var n int64
	err := s.withRefresh(func() error {
		var err error
		n, err = s.count(ctx)
		return err
	})
	if err == nil {
		err = s.settleSize(n)
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// count runs one counting pass. With a plan cache that lacks the stream's
// plan, the pass writes it there on the way (plan_file.go), so that the
// next jump into the stream, on this mount or the next, needs no pass.
func (s *Stream) count(ctx context.Context) (int64, error) {
	if sp := s.plans.spill(s); sp != nil {
		return sp.finish(s.runChecked(ctx, sp))
	}
	c := counter{enc: s.enc, n: int64(streamHeaderLen)}
	err := s.runChecked(ctx, &c)
	return c.n, err
}

// knownSize is the size if already known, else -1.
func (s *Stream) knownSize() int64 {
	s.sizeMu.Lock()
	defer s.sizeMu.Unlock()
	return s.size
}

// settleSize checks the length n a pass over the whole stream found (a
// count, or a pass that generated it) against one an earlier pass found,
// and remembers it.
func (s *Stream) settleSize(n int64) error {
	s.sizeMu.Lock()
	defer s.sizeMu.Unlock()
	if s.size >= 0 && s.size != n {
		return fmt.Errorf("sendgen: a pass over the stream of %s found %d bytes, an earlier one %d (the engine is not deterministic)", s.child, n, s.size)
	}
	s.size = n
	return nil
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
// options. An option that changes the bytes must be part of Options.String.
func cacheKey(child, parent *btrfsread.Subvolume, opts Options) string {
	p := "full"
	if parent != nil {
		p = subvolKey(parent)
	}
	return fmt.Sprintf("sendfs-stream/%d child=%s parent=%s %s", OutputVersion, subvolKey(child), p, opts)
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

type pauseKey struct{}

// WithPause returns a context under which every engine pass calls wait at
// its cancellation checks, every ctxCheckEvery commands: a background pass
// (sizes computed ahead of need) waits there while more urgent work runs.
func WithPause(ctx context.Context, wait func(context.Context) error) context.Context {
	return context.WithValue(ctx, pauseKey{}, wait)
}

// Pause calls the wait WithPause put in ctx, if any: what an engine pass
// does at its cancellation checks.
func Pause(ctx context.Context) error {
	if wait, ok := ctx.Value(pauseKey{}).(func(context.Context) error); ok {
		return wait(ctx)
	}
	return nil
}

func (k *checker) emit(c *Command) error {
	if k.count%ctxCheckEvery == 0 {
		if err := context.Cause(k.ctx); err != nil {
			return err
		}
		if err := Pause(k.ctx); err != nil {
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
