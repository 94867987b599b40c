package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRandomDeepMoves is the random incremental test at scale, dominated by
// directory operations: from each seed, a deep tree, a snapshot, N random
// operations (directory renames and moves into and out of directories that
// are themselves moved, renames over existing names, swaps, deletions of
// files and empty directories), another snapshot. Both directions are sent, by the kernel and by
// sendfs. Our stream must rebuild the child; where the kernel's stream
// rebuilds it too, ours must be the same stream. The kernel's failures (send
// errors, streams receive rejects or that rebuild another tree) are counted
// and logged: those are the pairs sendfs sends past the kernel.
//
//	SENDFS_DEEP_SEEDS=N     number of seeds (default defaultDeepSeeds)
//	SENDFS_SEED=S           only seed S (its operations are logged on failure)
//	SENDFS_DEEP_OPS=N       operations per seed (default 1000)
func TestRandomDeepMoves(t *testing.T) {
	requireRoot(t)
	seeds := randomSeeds(t, "SENDFS_DEEP_SEEDS", defaultDeepSeeds)
	nops := envInt(t, "SENDFS_DEEP_OPS", 1000)
	var total deepTally
	const perImage = 10
	for start := 0; start < len(seeds); start += perImage {
		batch := seeds[start:min(start+perImage, len(seeds))]
		t.Run(fmt.Sprintf("seeds-%d-%d", batch[0], batch[len(batch)-1]), func(t *testing.T) {
			total.add(checkDeepMoves(t, batch, nops))
		})
	}
	t.Logf("%d seeds × %d operations, %d pairs sent (both directions): %s", len(seeds), nops, total.pairs, total)
}

const defaultDeepSeeds = 3

// deepTally counts the outcomes of the kernel's sends.
type deepTally struct {
	pairs, identical                 int
	kernelSendFailed, kernelRejected int
	kernelWrongTree                  int
}

func (a *deepTally) add(b deepTally) {
	a.pairs += b.pairs
	a.identical += b.identical
	a.kernelSendFailed += b.kernelSendFailed
	a.kernelRejected += b.kernelRejected
	a.kernelWrongTree += b.kernelWrongTree
}

func (a deepTally) String() string {
	return fmt.Sprintf("%d byte-identical to the kernel's; the kernel failed on %d (send error %d, rejected by receive %d, wrong tree %d), all sent correctly by sendfs",
		a.identical, a.kernelSendFailed+a.kernelRejected+a.kernelWrongTree, a.kernelSendFailed, a.kernelRejected, a.kernelWrongTree)
}

// checkDeepMoves builds the seeds' trees in one filesystem and checks both
// directions of each pair.
func checkDeepMoves(t *testing.T, seeds []uint64, nops int) deepTally {
	fs := newFS(t, fsOpts{Size: 16 << 30})
	gens := map[uint64]*randomGen{}
	for _, seed := range seeds {
		g := &randomGen{seed: seed, wide: true}
		gens[seed] = g
		sv := fmt.Sprintf("sc/seed-%d", seed)
		d := subvolCreate(t, fs, sv)
		g.start(t, d, 1)
		g.deepTree(150)
		snapshotRO(t, fs, sv, fmt.Sprintf("snaps/seed-%d.0", seed))
		g.start(t, d, 2)
		for i := 0; i < nops; i++ {
			g.deepOp()
		}
		snapshotRO(t, fs, sv, fmt.Sprintf("snaps/seed-%d.1", seed))
	}
	syncFS(t, fs)
	remountRO(t, fs)
	var tally deepTally
	// One pair of receivers per direction: an incremental finds its base by
	// uuid, and each direction receives a different snapshot first.
	recv := [2][2]*receiver{{newReceiver(t), newReceiver(t)}, {newReceiver(t), newReceiver(t)}}
	for _, seed := range seeds {
		g := gens[seed]
		for dir, names := range [][2]string{{".0", ".1"}, {".1", ".0"}} {
			parent, child := fmt.Sprintf("snaps/seed-%d%s", seed, names[0]), fmt.Sprintf("snaps/seed-%d%s", seed, names[1])
			t.Run(fmt.Sprintf("seed-%d/%s", seed, []string{"forward", "backward"}[dir]), func(t *testing.T) {
				tally.pairs++
				checkDeepPair(t, fs, recv[dir][0], recv[dir][1], parent, child, &tally)
				if t.Failed() {
					t.Logf("replay with SENDFS_SEED=%d; operations:\n  %s", seed, strings.Join(g.log, "\n  "))
				}
			})
		}
	}
	return tally
}

// checkDeepPair sends child from parent, by the kernel (received into rk)
// and by sendfs (into ro).
func checkDeepPair(t *testing.T, fs *btrfsFS, rk, ro *receiver, parent, child string, tally *deepTally) {
	c := &corpus{fs: fs}
	full := kernelSend(t, fs.Mnt, fs.path(parent), "")
	ours, err := sendfsSendErr(t, fs.Images, child, parent)
	if err != nil {
		t.Fatalf("sendfs: %v", err)
	}
	kernelOK := false
	var quirks []string
	kinc, kerr := kernelSendErr(t, fs.path(child), fs.path(parent))
	if kerr != nil {
		tally.kernelSendFailed++
		t.Logf("the kernel's send fails: %v", kerr)
	} else if kgot, err := rk.receiveErr(t, full, kinc); err != nil {
		tally.kernelRejected++
		t.Logf("receive rejects the kernel's stream: %v", err)
	} else {
		diffs, err := treeDiffs(fs.path(child), kgot)
		if err != nil {
			t.Fatal(err)
		}
		var real []string
		for _, d := range diffs {
			if strings.HasPrefix(d, kernelQuirk) {
				quirks = []string{kernelQuirk}
			} else {
				real = append(real, d)
			}
		}
		if len(real) > 0 {
			tally.kernelWrongTree++
			t.Logf("the kernel's stream rebuilds another tree:\n%s", capLines(real))
		} else {
			kernelOK = true
		}
	}
	if !kernelOK {
		quirks = []string{kernelQuirk}
	}
	got := ro.receive(t, full, ours)
	c.compare(t, child, got, quirks)
	if kernelOK {
		if string(ours) == string(kinc) {
			tally.identical++
		} else {
			t.Errorf("our stream (%d bytes) differs from the kernel's (%d bytes), which rebuilds the snapshot:\n%s",
				len(ours), len(kinc), strings.Join(diffDumps(dump(t, kinc), dump(t, ours)), "\n"))
		}
	}
}

// deepTree builds the starting tree: chains of nested directories hung on
// random directories, with files, links and a few other inodes among them.
func (g *randomGen) deepTree(chains int) {
	for i := 0; i < chains; i++ {
		g.mkdirChain(1 + g.r.IntN(8))
		for n := g.r.IntN(4); n > 0; n-- {
			g.op(g.r.IntN(7)) // creations only
		}
	}
}

// deepOp applies one operation of the directory-heavy mix. Deletions are
// of single names, so that the tree keeps growing.
func (g *randomGen) deepOp() {
	switch n := g.r.IntN(100); {
	case n < 25:
		g.moveDir()
	case n < 35:
		g.rename()
	case n < 55:
		g.swap()
	case n < 67:
		g.mkdirChain(1 + g.r.IntN(3))
	case n < 77:
		g.op(g.r.IntN(7)) // a creation
	case n < 85:
		g.link()
	case n < 90:
		if p := g.pick("file"); p != "" {
			g.do("unlink "+p, os.Remove(g.abs(p)))
		}
	case n < 93:
		g.rmdir()
	default:
		g.op(7 + g.r.IntN(len(randomOps)-7)) // data, metadata, reflinks
	}
}

// mkdirChain creates n nested directories under a random directory.
func (g *randomGen) mkdirChain(n int) {
	p := g.pick("dir")
	for ; n > 0; n-- {
		p = filepath.Join(p, g.name())
		g.do("mkdir "+p, os.Mkdir(g.abs(p), 0o755))
	}
}

// moveDir moves a directory into another one (often deep, often one moved
// before), under a name that may already be taken by an empty directory.
func (g *randomGen) moveDir() {
	src, dst := g.pick("dir"), g.deepDir()
	if src == "." || src == "" {
		return
	}
	to := filepath.Join(dst, g.name())
	g.do(fmt.Sprintf("mv %s %s", src, to), unix.Rename(g.abs(src), g.abs(to)))
}

// deepDir picks a directory, the deeper of two random ones: moves make the
// tree deep (tens of levels).
func (g *randomGen) deepDir() string {
	a, b := g.pick("dir"), g.pick("dir")
	if strings.Count(b, "/") > strings.Count(a, "/") {
		return b
	}
	return a
}

// swap exchanges two entries (RENAME_EXCHANGE), often a directory and a
// (hard-linked) file, which then takes the directory's name.
func (g *randomGen) swap() {
	a, b := g.pick("any"), g.pick("any")
	if g.r.IntN(2) == 0 {
		b = g.pick("file")
	}
	if a == "" || b == "" {
		return
	}
	g.do(fmt.Sprintf("swap %s %s", a, b), unix.Renameat2(unix.AT_FDCWD, g.abs(a), unix.AT_FDCWD, g.abs(b), unix.RENAME_EXCHANGE))
}
