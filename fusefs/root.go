package fusefs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"

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
	// CacheDir keeps computed stream sizes across mounts; "" disables it.
	CacheDir string
	// Logger receives one line per failed read or lookup and progress
	// messages; nil discards them.
	Logger *slog.Logger
	// Stream selects the form of every stream served (protocol, compressed
	// data); the zero value is `sendfs send`'s default. Clone sources and
	// AllowWritable are not used.
	Stream sendgen.Options
}

// Root is the root directory of the tree and the state its nodes share.
type Root struct {
	dir
	cat    *catalog
	sizes  *sizeCache
	open   streamOpener
	diff   differ // nil: no from/<parent>.diff
	log    *slog.Logger
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	owner  owner
	slots  chan struct{} // one per background size computation (computeSize)
	// mtime of the directories above the snapshots: the newest creation
	// time among them, so that it is stable across mounts.
	mtime btrfsread.Timespec
	// sizeFailures maps a stream's label to the size error last logged for
	// it: a failing stream is logged once, not on every stat.
	sizeFailures sync.Map
}

// owner is who the nodes belong to: the mounting user.
type owner struct{ uid, gid uint32 }

// New reads the subvolume list of cfg.FS and builds the tree. It generates
// no stream; call Warm to compute sizes ahead of the first lookup.
func New(cfg Config) (*Root, error) {
	svs, err := cfg.FS.Subvolumes()
	if err != nil {
		return nil, fmt.Errorf("listing subvolumes: %w", err)
	}
	opts := cfg.Stream
	opts.CloneSources, opts.AllowWritable = nil, false
	r := newRoot(svs, cfg, sendgenOpener(opts))
	r.diff = diffText
	return r, nil
}

func newRoot(svs []*btrfsread.Subvolume, cfg Config, open streamOpener) *Root {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Root{
		cat:    newCatalog(svs, cfg.AllSubvolumes),
		sizes:  newSizeCache(ctx, cfg.CacheDir, log),
		open:   open,
		log:    log,
		ctx:    ctx,
		cancel: cancel,
		owner:  owner{uid: uint32(os.Getuid()), gid: uint32(os.Getgid())},
		slots:  make(chan struct{}, runtime.NumCPU()),
	}
	for _, s := range r.cat.names {
		if t := creationTime(s.sv); t.Sec > r.mtime.Sec || (t.Sec == r.mtime.Sec && t.Nsec > r.mtime.Nsec) {
			r.mtime = t
		}
	}
	r.dir = dir{r: r, ino: inoRoot, mtime: r.mtime, contents: rootContents{}}
	return r
}

// Snapshots returns the number of subvolumes served.
func (r *Root) Snapshots() int { return len(r.cat.names) }

// Close stops background work (warming, size computations in flight).
func (r *Root) Close() { r.cancel() }

var _ fs.InodeEmbedder = (*Root)(nil)
