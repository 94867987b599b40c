package test

import (
	"strings"
	"testing"
)

// TestReceivedParent sends snapshots that were themselves received from
// another filesystem: the stream must carry the identities the kernel puts
// there (the received uuid and transid, for the subvolume and for the
// parent), so that a third filesystem holding the original parent, or our
// full stream of the received one, accepts our incremental stream.
func TestReceivedParent(t *testing.T) {
	requireRoot(t)
	// B: the origin, with s1 → s2.
	b := newFS(t, fsOpts{Size: 2 << 30})
	sv := subvolCreate(t, b, "sv")
	baseTree(t, sv)
	s1 := snapshotRO(t, b, "sv", "s1")
	mustRename(t, j(sv, "a"), j(sv, "e", "a"))
	writeAt(t, j(sv, "big"), 4096, random(10000, 1))
	writeFile(t, j(sv, "new"), []byte("new"))
	s2 := snapshotRO(t, b, "sv", "s2")
	kb1, kb12 := kernelSend(t, b.Mnt, s1, ""), kernelSend(t, b.Mnt, s2, s1)

	// A: s1 and s2 received from B; the kernel's sends from A are the
	// reference for ours.
	ra := newReceiver(t)
	a := ra.fs
	ra.receive(t, kb1, kb12) // into r1/
	ka1, ka12 := kernelSend(t, a.Mnt, a.path("r1/s1"), ""), kernelSend(t, a.Mnt, a.path("r1/s2"), a.path("r1/s1"))
	remountRO(t, a)

	o1 := sendfsSend(t, a.Images, "r1/s1", "")
	o12 := sendfsSend(t, a.Images, "r1/s2", "r1/s1")
	if d := diffDumps(dump(t, ka1), dump(t, o1)); d != nil {
		t.Errorf("full send of a received snapshot: dump differs from the kernel's:\n%s", strings.Join(d, "\n"))
	}
	kd, od := dump(t, ka12), dump(t, o12)
	if d := diffDumps(kd[:1], od[:1]); d != nil {
		t.Errorf("incremental from a received parent: the snapshot command differs from the kernel's:\n%s", strings.Join(d, "\n"))
	}

	// C holds s1 as received from B; D holds our full stream of A's s1.
	c := newReceiver(t)
	c.receive(t, kb1)
	compareTrees(t, s2, c.receive(t, o12))
	d := newReceiver(t)
	got1 := d.receive(t, o1)
	compareTrees(t, s1, got1)
	compareTrees(t, s2, d.receive(t, o12))
}
