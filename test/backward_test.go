package test

import (
	"testing"
)

// checkBackwards sends each scenario's incremental backwards: its first
// snapshot from its last one, so that every creation becomes a deletion and
// every rename runs in reverse. Receive of the kernel's full of the last
// snapshot, then our incremental, must give the first.
//
// Pairs of unrelated subvolumes are not tested: the kernel's own streams
// for them often fail to receive (e.g. "rename d0 -> zstd/b failed: Not a
// directory", "link f0 -> x failed: Operation not permitted"), so it is no
// oracle there.
func checkBackwards(t *testing.T, c *corpus, scenarios []scenario) {
	rk, ro := newReceiver(t), newReceiver(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if c.broken[sc.name] {
				t.Fatal("scenario could not be built (see its build subtest)")
			}
			c.checkPair(t, rk, ro, snapName(sc, 0), snapName(sc, len(sc.changes)))
		})
	}
}

// checkPair checks the incremental stream child-from-parent on the
// read-only mounted corpus: the kernel's round trip first (into rk), then
// ours (into ro), with the kernel's full stream of the parent as the base.
func (c *corpus) checkPair(t *testing.T, rk, ro *receiver, child, parent string) {
	full := kernelSend(t, c.fs.Mnt, c.fs.path(parent), "")
	kinc := kernelSend(t, c.fs.Mnt, c.fs.path(child), c.fs.path(parent))
	kgot := rk.receive(t, full, kinc)
	quirks, _ := c.compare(t, child, kgot, []string{kernelQuirk})
	ours := sendfsSend(t, c.fs.Images, child, parent)
	checkSizeNotWorse(t, len(ours), len(kinc))
	got := ro.receive(t, full, ours)
	c.compare(t, child, got, quirks)
	compareHoles(t, kgot, got)
}
