package btrfsread

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// A filesystem that is mounted elsewhere keeps committing: every commit
// writes a new superblock, and blocks that only older commits reached are
// freed and reused (a balance moves every block). An *FS is one view of
// the filesystem: the superblock and chunk map of one commit. It never
// changes, so a walk or a stream that runs on one view sees one consistent
// filesystem. A view goes stale when blocks it reaches are reused; reads
// then fail validation, and Refresh gives the view of the newest commit.
// Views of one filesystem share the devices and the block cache (blocks
// are validated against the pointer that asks for them, so a cached block
// of an older view is never taken for a newer one).

// liveState is what the views of one filesystem share.
type liveState struct {
	mu     sync.Mutex // serializes refreshes
	latest atomic.Pointer[FS]
}

// ErrDeleted reports a subvolume that no longer exists at the newest
// commit of a live filesystem. It matches ErrNotFound too.
var ErrDeleted = fmt.Errorf("deleted: %w", ErrNotFound)

// maxRefreshes bounds how often Retry refreshes for one operation: every
// refresh needs a newer commit, so only a filesystem that commits faster
// than the operation runs (or a block that is really bad while commits
// keep coming) gets there.
const maxRefreshes = 64

// Latest returns the newest view of the filesystem loaded so far (fs
// itself until a Refresh found a newer commit).
func (fs *FS) Latest() *FS { return fs.live.latest.Load() }

// Generation is the transaction id of the commit the view shows.
func (fs *FS) Generation() uint64 { return fs.sb.generation }

// Refresh reads the superblocks again (every copy on every member, the
// valid one with the highest generation wins) and returns the view of the
// newest commit: the newest view already loaded when nothing was committed
// since, else a new view with the chunk map read again. fs itself stays
// as it was.
func (fs *FS) Refresh() (*FS, error) {
	l := fs.live
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.latest.Load()
	members, best, err := cur.rereadSuperblocks()
	if err != nil {
		return nil, err
	}
	if best.generation <= cur.sb.generation {
		return cur, nil
	}
	nv := &FS{sb: best, csum: cur.csum, members: members, blocks: cur.blocks, extents: newExtentCache(), live: l,
		opts: cur.opts, warnings: cur.warnings, readErrs: cur.readErrs}
	if err := nv.loadChunksLive(); err != nil {
		return nil, fmt.Errorf("reading the chunk tree of generation %d: %w", nv.sb.generation, err)
	}
	l.latest.Store(nv)
	return nv, nil
}

// rereadSuperblocks reads the superblocks of fs's members again and returns
// the members with them and the newest one.
func (fs *FS) rereadSuperblocks() ([]*member, *superblock, error) {
	members := make([]*member, len(fs.members))
	best := fs.sb
	for i, m := range fs.members {
		sb, err := readSuperblock(m.Device)
		if err != nil {
			return nil, nil, fmt.Errorf("re-reading the superblock: %w", err)
		}
		if sb.fsid != fs.sb.fsid || sb.dev.devid != m.sb.dev.devid {
			return nil, nil, fmt.Errorf("%s no longer holds member devid %d of filesystem %s", m.Name, m.sb.dev.devid, uuidString(fs.sb.fsid))
		}
		members[i] = &member{Device: m.Device, sb: sb}
		if sb.generation > best.generation {
			best = sb
		}
	}
	if best == fs.sb {
		return fs.members, best, nil
	}
	if err := best.checkFeatures(); err != nil {
		return nil, nil, err
	}
	if best.csumType != fs.sb.csumType || best.nodeSize != fs.sb.nodeSize || best.metadataUUID != fs.sb.metadataUUID {
		return nil, nil, fmt.Errorf("filesystem %s was reformatted or converted while it was read", uuidString(fs.sb.fsid))
	}
	return members, best, nil
}

// loadChunksLive is loadChunks for a filesystem that may be committing
// while it is opened: when the chunk tree read fails validation, the
// superblocks are read again and, if there is a newer commit, its chunk
// tree is read instead.
func (fs *FS) loadChunksLive() error {
	for range maxRefreshes {
		err := fs.loadChunks()
		if !Stale(err) {
			return err
		}
		members, best, rerr := fs.rereadSuperblocks()
		if rerr != nil {
			return fmt.Errorf("%w (and then %w)", err, rerr)
		}
		if best.generation <= fs.sb.generation {
			return err
		}
		fs.members, fs.sb = members, best
	}
	return fmt.Errorf("the filesystem committed %d times while it was opened; try again when it is quieter", maxRefreshes)
}

// Stale reports whether err is what reading a view whose blocks were
// reused looks like: a tree block or file data that fails validation.
// Only after a refresh that finds no newer commit is such an error
// corruption.
func Stale(err error) bool {
	var ce *CorruptError
	return errors.As(err, &ce) || errors.Is(err, ErrDataChecksum) || errors.Is(err, errMoved)
}

// errMoved reports data without a checksum that was read while a newer
// commit than the view's existed: it may already have been overwritten.
var errMoved = errors.New("the filesystem committed while data without a checksum was read")

// Retry runs fn on fs and returns its result, unless fn fails with an error
// that a newer commit can explain (Stale): then fn runs again on the view of
// a newer commit (a newer view already loaded, else the superblocks are read
// again). The error of a view that is still the newest on disk is returned
// as it is: only that is corruption.
func (fs *FS) Retry(fn func(*FS) error) error {
	v := fs
	for range maxRefreshes {
		err := fn(v)
		if err == nil || !Stale(err) {
			return err
		}
		// A newer view loaded already (another reader refreshed) is
		// tried first; only when v is the newest are the superblocks
		// read again.
		nv := v.Latest()
		if nv.sb.generation <= v.sb.generation {
			var rerr error
			if nv, rerr = v.Refresh(); rerr != nil {
				return fmt.Errorf("%w (and then %w)", err, rerr)
			}
		}
		if nv.sb.generation <= v.sb.generation {
			return err
		}
		v = nv
	}
	return fmt.Errorf("the filesystem committed %d times while one operation read it; try again when it is quieter", maxRefreshes)
}

// In returns the same subvolume in view fs: found by id, with the same
// uuid. A subvolume that no longer exists there is ErrDeleted.
func (sv *Subvolume) In(fs *FS) (*Subvolume, error) {
	if sv.fs == fs {
		return sv, nil
	}
	nsv, err := fs.Subvolume(sv.ID)
	if errors.Is(err, ErrNotFound) || err == nil && nsv.Root.UUID != sv.Root.UUID {
		return nil, sentinelf(ErrDeleted, "subvolume %q (id %d) was deleted", sv.Path, sv.ID)
	}
	return nsv, err
}

// checkCurrent fails with errMoved unless the view is still the newest
// commit on disk: data that has no checksum cannot show that it was
// overwritten, but it cannot have been while no newer commit exists.
func (fs *FS) checkCurrent() error {
	sb, err := readSuperblock(fs.members[0].Device)
	if err != nil {
		return fmt.Errorf("re-reading the superblock: %w", err)
	}
	if sb.generation != fs.sb.generation {
		return errMoved
	}
	return nil
}

// newest reports whether no newer view than fs has been loaded: a block
// that fails validation in it is rather a stale cached page than a moved
// block.
func (fs *FS) newest() bool {
	l := fs.live.latest.Load()
	return l == nil || fs.sb.generation >= l.sb.generation
}

// dropCaches drops the cached windows of every member that is a block
// device and reports whether there was one (else a re-read would change
// nothing).
func (fs *FS) dropCaches() bool {
	dropped := false
	for _, m := range fs.members {
		if bd, ok := m.R.(*blockDevice); ok {
			bd.dropCache()
			dropped = true
		}
	}
	return dropped
}

// SameFilesystem reports whether fs and o are views of one opened
// filesystem.
func (fs *FS) SameFilesystem(o *FS) bool { return fs != nil && o != nil && fs.live == o.live }
