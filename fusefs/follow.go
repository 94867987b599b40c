package fusefs

import (
	"fmt"
	"time"

	"sendfs/btrfsread"
)

// Following a live filesystem: Follow polls the superblock generation and,
// when a commit happened, reads the subvolume list again and swaps the
// catalog. Nodes of snapshots that did not change keep their inode numbers
// and kernel inodes (and so their cached pages); a renamed snapshot's nodes
// keep their inode numbers but get a new generation (snapshot.ident), so
// the kernel sees new inodes. Every directory answers from the newest
// catalog: a deleted snapshot's names are ENOENT, a new one's appear. A
// stream opened before a change keeps the pair it opened; its reads move
// to newer commits by themselves (sendgen's refresh).

// followTimeout is how long the kernel may cache entries and attributes of
// a mount that follows the filesystem: changes show within it.
const followTimeout = time.Second

// listSubvolumes reads the subvolume list at the newest commit, and which
// commit that is.
func listSubvolumes(fsys *btrfsread.FS) ([]*btrfsread.Subvolume, uint64, error) {
	var svs []*btrfsread.Subvolume
	var gen uint64
	err := fsys.Latest().Retry(func(v *btrfsread.FS) error {
		var err error
		svs, err = v.Subvolumes()
		gen = v.Generation()
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("listing subvolumes: %w", err)
	}
	return svs, gen, nil
}

// Follow polls the filesystem every Config.Refresh and serves its newest
// subvolume list, until Close. It returns at once when Refresh is 0.
func (r *Root) Follow() {
	if r.fs == nil || r.refresh <= 0 {
		return
	}
	t := time.NewTicker(r.refresh)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		err := r.poll()
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != r.failed && msg != "" {
			r.log.Error("refreshing the subvolume list failed; serving the last one", "err", err)
		}
		r.failed = msg
	}
}

// poll swaps in the subvolume list of the newest commit when there is one,
// logs what changed and sizes the new streams in the background.
func (r *Root) poll() error {
	old := r.catalog()
	latest, err := r.fs.Refresh()
	if err != nil {
		return err
	}
	if latest.Generation() == old.generation {
		return nil
	}
	svs, gen, err := listSubvolumes(latest)
	if err != nil {
		return err
	}
	c := newCatalog(svs, r.allSubs)
	c.generation = gen
	r.cat.Store(c)
	var added []*snapshot
	for _, s := range c.names {
		if old.current(s) == nil {
			added = append(added, s)
		}
	}
	removed := 0
	for _, s := range old.names {
		if c.current(s) == nil {
			removed++
		}
	}
	if len(added) > 0 || removed > 0 {
		r.log.Info("subvolume list changed", "generation", gen, "snapshots", len(c.names), "new", len(added), "gone", removed)
		go r.computeSizes(warmPairs(added), 1, false)
	}
	return nil
}

// entryTimeout is how long the kernel may cache names and attributes.
func (r *Root) entryTimeout() time.Duration {
	if r.fs != nil && r.refresh > 0 {
		return followTimeout
	}
	return cacheTimeout
}
