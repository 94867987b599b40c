package fusefs

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"

	"github.com/google/uuid"

	"sendfs/btrfsread"
)

// snapshot is one subvolume the mount serves.
type snapshot struct {
	sv   *btrfsread.Subvolume
	name string // unique in snapshots/ (mountName)
	uuid string // canonical text form, "" when the subvolume has none
	// related lists the subvolumes of the same lineage, sorted by name: the
	// parents from/ shows.
	related []*snapshot
	// ident tells this snapshot from what a later refresh may show under the
	// same id: it covers its name and identity (subvolKey). It is the
	// generation of its nodes: a renamed snapshot gets new nodes (new
	// kernel inodes, no cached pages of the old name's streams), an
	// unchanged one keeps its nodes.
	ident uint64
}

// catalog is the set of served subvolumes as of one commit, with the indexes
// the directories answer from. A refresh replaces it whole (follow.go).
type catalog struct {
	generation uint64 // of the commit it shows
	// mtime of the directories above the snapshots: the newest creation
	// time among them, so that it is stable across mounts.
	mtime  btrfsread.Timespec
	byName map[string]*snapshot
	byID   map[uint64]*snapshot
	byUUID map[string]*snapshot
	names  []*snapshot // sorted by name
	ids    []*snapshot // sorted by id
	uuids  []*snapshot // with a uuid, sorted by uuid text
}

// newCatalog keeps the read-only subvolumes of svs (all of them with
// allSubvolumes) and links each to the others of its lineage.
func newCatalog(svs []*btrfsread.Subvolume, allSubvolumes bool) *catalog {
	c := &catalog{
		byName: map[string]*snapshot{},
		byID:   map[uint64]*snapshot{},
		byUUID: map[string]*snapshot{},
	}
	for _, sv := range svs {
		if !sv.ReadOnly() && !allSubvolumes {
			continue
		}
		if sv.Path == "" {
			continue // the top level (never sent: no name to receive it under) or unlinked
		}
		s := &snapshot{sv: sv, name: c.freeName(sv), ident: identity(sv)}
		if !sv.Root.UUID.IsZero() {
			s.uuid = uuid.UUID(sv.Root.UUID).String()
			c.byUUID[s.uuid] = s
			c.uuids = append(c.uuids, s)
		}
		c.byName[s.name] = s
		c.byID[sv.ID] = s
		c.names = append(c.names, s)
		c.ids = append(c.ids, s)
	}
	slices.SortFunc(c.names, func(a, b *snapshot) int { return cmp.Compare(a.name, b.name) })
	slices.SortFunc(c.ids, func(a, b *snapshot) int { return cmp.Compare(a.sv.ID, b.sv.ID) })
	slices.SortFunc(c.uuids, func(a, b *snapshot) int { return cmp.Compare(a.uuid, b.uuid) })
	for _, a := range c.names {
		for _, b := range c.names {
			if sameLineage(a.sv, b.sv) {
				a.related = append(a.related, b)
			}
		}
		if t := creationTime(a.sv); t.Sec > c.mtime.Sec || (t.Sec == c.mtime.Sec && t.Nsec > c.mtime.Nsec) {
			c.mtime = t
		}
	}
	return c
}

// identity hashes what a snapshot's nodes show of it: its path (the names)
// and what its streams carry of it.
func identity(sv *btrfsread.Subvolume) uint64 {
	h := fnv.New64a()
	r := &sv.Root
	fmt.Fprintf(h, "%q %x %x %d %d", sv.Path, r.UUID, r.ReceivedUUID, r.CTransid, r.STransid)
	return h.Sum64()
}

// current returns the snapshot of c that is s as of c: the same id and
// identity, or nil when it was deleted or renamed since.
func (c *catalog) current(s *snapshot) *snapshot {
	if cur := c.byID[s.sv.ID]; cur != nil && cur.ident == s.ident {
		return cur
	}
	return nil
}

// sameLineage reports whether a and b are distinct snapshots of one
// subvolume (they share a parent uuid) or one was snapshotted from the other.
func sameLineage(a, b *btrfsread.Subvolume) bool {
	if a.ID == b.ID {
		return false
	}
	pa, pb := a.Root.ParentUUID, b.Root.ParentUUID
	switch {
	case !pa.IsZero() && (pa == pb || pa == b.Root.UUID):
		return true
	case !pb.IsZero() && pb == a.Root.UUID:
		return true
	}
	return false
}

// lookupID resolves a by-id name: the decimal id, written canonically.
func (c *catalog) lookupID(name string) *snapshot {
	id, err := strconv.ParseUint(name, 10, 64)
	if err != nil || strconv.FormatUint(id, 10) != name {
		return nil
	}
	return c.byID[id]
}

// byCloseness returns s.related ordered by how far each is from s in
// creation order (closest generation first, then name): the parents a
// backup tool most likely wants, warmed first.
func (s *snapshot) byCloseness() []*snapshot {
	dist := func(o *snapshot) uint64 {
		a, b := s.sv.Root.CTransid, o.sv.Root.CTransid
		if a > b {
			return a - b
		}
		return b - a
	}
	out := slices.Clone(s.related)
	slices.SortStableFunc(out, func(x, y *snapshot) int { return cmp.Compare(dist(x), dist(y)) })
	return out
}
