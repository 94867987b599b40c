package fusefs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"

	"sendfs/btrfsread"
	"sendfs/sendgen"
)

// Config says what a mount serves.
type Config struct {
	// FS is the filesystem the streams are generated from.
	FS *btrfsread.FS
	// AllSubvolumes serves writable subvolumes too (for images that are not
	// mounted anywhere); by default only read-only ones, as btrfs send.
	AllSubvolumes bool
	// CacheDir keeps computed stream sizes, and stream plans (written
	// while sizes are counted), across mounts; "" disables it.
	CacheDir string
	// Logger receives one line per failed read or lookup and progress
	// messages; nil discards them.
	Logger *slog.Logger
	// Stream selects the form of every stream served (protocol, compressed
	// data); the zero value is `sendfs send`'s default. Clone sources and
	// AllowWritable are not used.
	Stream sendgen.Options
	// Refresh is how often Follow polls the filesystem for new commits;
	// 0 serves the subvolumes as they were at mount time.
	Refresh time.Duration
}

// Root is the root directory of the tree and the state its nodes share.
type Root struct {
	dir
	fs      *btrfsread.FS // nil in tests of this package
	cat     atomic.Pointer[catalog]
	refresh time.Duration
	allSubs bool
	sizes   *sizeCache
	open    streamOpener
	diff    differ // nil: no from/<parent>.diff
	log     *slog.Logger
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	owner   owner
	// slots and urgentSlots bound the size computations computeSize runs
	// in the background and for from/ listings, one token each: apart, so
	// that an urgent one never waits for a slot a paused one holds.
	slots, urgentSlots chan struct{}
	// failed is the refresh error last logged (follow.go), so that a
	// failing poll logs once.
	failed string
	// sizeFailures maps a stream's label to the size error last logged for
	// it: a failing stream is logged once, not on every stat.
	sizeFailures sync.Map
}

// owner is who the nodes belong to: the mounting user.
type owner struct{ uid, gid uint32 }

// New reads the subvolume list of cfg.FS and builds the tree. It generates
// no stream; call Warm to compute sizes ahead of the first lookup.
func New(cfg Config) (*Root, error) {
	svs, gen, err := listSubvolumes(cfg.FS)
	if err != nil {
		return nil, err
	}
	opts := cfg.Stream
	opts.CloneSources, opts.AllowWritable = nil, false
	var plans *sendgen.PlanCache
	if cfg.CacheDir != "" {
		plans = sendgen.NewPlanCache(cfg.CacheDir, logger(cfg))
	}
	r := newRoot(svs, cfg, sendgenOpener(opts, plans))
	r.diff = diffText
	r.fs = cfg.FS
	r.catalog().generation = gen
	return r, nil
}

func newRoot(svs []*btrfsread.Subvolume, cfg Config, open streamOpener) *Root {
	log := logger(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	r := &Root{
		refresh:     cfg.Refresh,
		allSubs:     cfg.AllSubvolumes,
		sizes:       newSizeCache(ctx, cfg.CacheDir, log),
		open:        open,
		log:         log,
		ctx:         ctx,
		cancel:      cancel,
		owner:       owner{uid: uint32(os.Getuid()), gid: uint32(os.Getgid())},
		slots:       make(chan struct{}, runtime.NumCPU()),
		urgentSlots: make(chan struct{}, runtime.NumCPU()),
	}
	r.cat.Store(newCatalog(svs, cfg.AllSubvolumes))
	r.dir = dir{r: r, ino: inoRoot, contents: rootContents{}}
	return r
}

// logger is cfg.Logger, or one that discards.
func logger(cfg Config) *slog.Logger {
	if cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return cfg.Logger
}

// catalog returns the subvolumes served now.
func (r *Root) catalog() *catalog { return r.cat.Load() }

// Snapshots returns the number of subvolumes served.
func (r *Root) Snapshots() int { return len(r.catalog().names) }

// Close stops background work (warming, size computations in flight).
func (r *Root) Close() { r.cancel() }

var _ fs.InodeEmbedder = (*Root)(nil)
