package btrfsread

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
)

// OpenOptions tune how a filesystem is assembled from its members.
type OpenOptions struct {
	// Degraded accepts missing member devices: blocks are read from the
	// copies on the members given, RAID5/6 blocks rebuilt from parity. A
	// read that needs a missing member and has no other copy fails with an
	// error naming the missing devids (ErrMissingDevice).
	Degraded bool
	// Log receives the read errors of a member that were read around. Nil
	// discards them. (Missing members are in FS.Warnings.)
	Log *slog.Logger
}

// MissingDevids returns the devids of the member devices that were not
// given (only when opened degraded), sorted.
func (fs *FS) MissingDevids() []uint64 { return fs.missingDevids }

// Block group type bits of a chunk, besides the profile.
const (
	bgData     = 1 << 0
	bgSystem   = 1 << 1
	bgMetadata = 1 << 2
)

// profileName names a chunk's profile as mkfs.btrfs does.
func (c *chunk) profileName() string {
	switch c.profile() {
	case bgRAID0:
		return "raid0"
	case bgRAID1:
		return "raid1"
	case bgDUP:
		return "dup"
	case bgRAID10:
		return "raid10"
	case bgRAID5:
		return "raid5"
	case bgRAID6:
		return "raid6"
	case bgRAID1C3:
		return "raid1c3"
	case bgRAID1C4:
		return "raid1c4"
	}
	return "single"
}

// kindName names what a chunk holds.
func (c *chunk) kindName() string {
	var kinds []string
	for _, k := range []struct {
		bit  uint64
		name string
	}{{bgData, "data"}, {bgMetadata, "metadata"}, {bgSystem, "system"}} {
		if c.typ&k.bit != 0 {
			kinds = append(kinds, k.name)
		}
	}
	return strings.Join(kinds, "+")
}

// readable reports whether every block of the chunk still has a copy on
// the members given.
func (c *chunk) readable() bool {
	lost := 0
	for _, s := range c.stripes {
		if s.dev == nil {
			lost++
		}
	}
	switch c.profile() {
	case 0, bgRAID0:
		return lost == 0
	case bgDUP, bgRAID1, bgRAID1C3, bgRAID1C4:
		return lost < len(c.stripes)
	case bgRAID5:
		return lost <= 1
	case bgRAID6:
		return lost <= 2
	}
	// RAID10: every group of sub_stripes mirrors keeps one.
	for g := 0; g+c.subStripes <= len(c.stripes); g += c.subStripes {
		kept := false
		for _, s := range c.stripes[g : g+c.subStripes] {
			kept = kept || s.dev != nil
		}
		if !kept {
			return false
		}
	}
	return true
}

// lostStripes reports a read of chunk c that needs stripes on the missing
// members devids.
func lostStripes(c *chunk, devids []uint64) error {
	return sentinelf(ErrMissingDevice, "this %s %s range needs missing device devid %s (chunk at logical 0x%x)",
		c.profileName(), c.kindName(), joinDevids(devids), c.logical)
}

func joinDevids(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, ", ")
}

// readStripe reads p at a physical place of chunk c. A stripe of a missing
// member fails without I/O; a read error is logged (once per range) since
// the caller reads around it from another copy or from parity.
func (fs *FS) readStripe(c *chunk, pl place, p []byte, fresh bool) error {
	if pl.s.dev == nil {
		return lostStripes(c, []uint64{pl.s.devid})
	}
	err := fs.readPhysical(pl, p, fresh)
	if err != nil {
		fs.readErrs.report(fs.opts.Log, pl, len(p), err)
	}
	return err
}

// readErrorLog remembers which failed reads were logged, so that a range
// read again (another stream, a retry) is not logged twice.
type readErrorLog struct {
	mu   sync.Mutex
	seen map[readErrorKey]bool
}

type readErrorKey struct {
	devid, physical uint64
	n               int
}

// maxLoggedReadErrors bounds the memory of logged ranges; past it every
// failure is logged again.
const maxLoggedReadErrors = 4096

func (l *readErrorLog) report(log *slog.Logger, pl place, n int, err error) {
	if log == nil {
		return
	}
	k := readErrorKey{pl.s.devid, pl.physical, n}
	l.mu.Lock()
	if l.seen == nil || len(l.seen) >= maxLoggedReadErrors {
		l.seen = map[readErrorKey]bool{}
	}
	dup := l.seen[k]
	l.seen[k] = true
	l.mu.Unlock()
	if !dup {
		log.Warn("read error; reading this range from another copy or from parity",
			"device", pl.s.dev.Name, "devid", pl.s.devid,
			"range", fmt.Sprintf("%d-%d", pl.physical, pl.physical+uint64(n)), "error", err)
	}
}

// degradedWarnings says which members are missing and which chunks lost
// every copy of some of their blocks (for Warnings).
func (fs *FS) degradedWarnings() []string {
	if len(fs.missingDevids) == 0 {
		return nil
	}
	lost := map[string]int{} // "raid0 data" -> chunks
	var names []string
	for i := range fs.chunks {
		c := &fs.chunks[i]
		if c.readable() {
			continue
		}
		name := c.profileName() + " " + c.kindName()
		if lost[name] == 0 {
			names = append(names, name)
		}
		lost[name]++
	}
	out := []string{fmt.Sprintf("member devices missing, reading degraded: devid %s", joinDevids(fs.missingDevids))}
	for _, name := range names {
		out = append(out, fmt.Sprintf("%d %s chunks have blocks on missing devices only: what is stored there cannot be read", lost[name], name))
	}
	return out
}
