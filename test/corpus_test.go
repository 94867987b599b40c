package test

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"sendfs/sendgen"
)

// step builds or changes the tree of one scenario; d is the scenario's
// subvolume (absolute path, mounted read-write).
type step func(t testing.TB, d string)

// scenario is one entry of a corpus. setup builds the first snapshot's
// state; each change is followed by another snapshot, so a scenario with
// changes is an incremental chain s0 → s1 → ... received in order.
type scenario struct {
	name    string
	setup   step
	changes []step
	// reuse, if set, runs after the first change once the filesystem has
	// been unmounted and mounted again, before the snapshot: btrfs then
	// hands out the inode numbers that the change freed (inode number reuse).
	reuse step
	// describe, if set, is logged when the scenario fails (e.g. the
	// operations a random scenario ran).
	describe func() string
	// dumpNote explains why our dump may differ from the kernel's for this
	// scenario; without it a full send's dump must match command for command.
	dumpNote string
}

func full(name string, setup step) scenario { return scenario{name: name, setup: setup} }

func inc(name string, setup step, changes ...step) scenario {
	return scenario{name: name, setup: setup, changes: changes}
}

// corpus is a set of scenarios built in one filesystem, with the kernel's
// streams recorded for every snapshot pair.
type corpus struct {
	fs     *btrfsFS
	broken map[string]bool // scenarios whose build failed
	// kernel streams per scenario: fulls[i] of snapshot i, incs[i] from
	// snapshot i to i+1.
	fulls map[string][][]byte
	incs  map[string][][]byte
	// light sends each stream once (no --size, determinism or range
	// checks), skips the dumps of incrementals and the full of the first
	// snapshot: for many random pairs.
	light bool
	// variant is the send options of every stream, the kernel's and ours
	// (the zero value: protocol 1, no flags).
	variant sendVariant
	// chainsOnly checks only the incremental chains of scenarios that have
	// one, not their full sends (which the full corpus covers).
	chainsOnly bool
}

// sendVariant is a set of send options, as btrfs send and sendfs send take
// them and as sendgen.Options.
type sendVariant struct {
	name string
	args []string
	opts sendgen.Options
}

// protocolVariants are the option sets every corpus is also checked with.
var protocolVariants = []sendVariant{
	{"proto2", []string{"--proto", "2"}, sendgen.Options{Protocol: 2}},
	{"compressed-data", []string{"--compressed-data"}, sendgen.Options{CompressedData: true}},
}

// withVariant returns the corpus as seen with the send options of v: the
// kernel's streams are sent again with them (the filesystem stays mounted
// read-only). With chainsOnly, scenarios with changes check only their chain.
func (c *corpus) withVariant(t *testing.T, v sendVariant, scenarios []scenario, chainsOnly bool) *corpus {
	vc := &corpus{fs: c.fs, broken: c.broken, light: c.light, variant: v, chainsOnly: chainsOnly}
	vc.recordKernel(t, scenarios)
	return vc
}

// checkVariants runs checkCorpus again with each of variants, in subtest
// <variant>; with chainsOnly, scenarios with changes check only their
// incremental chain.
func checkVariants(t *testing.T, c *corpus, scenarios []scenario, variants []sendVariant, chainsOnly bool) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			checkCorpus(t, c.withVariant(t, v, scenarios, chainsOnly), scenarios)
		})
	}
}

func snapName(sc scenario, i int) string { return fmt.Sprintf("snaps/%s.%d", sc.name, i) }

// buildCorpus builds every scenario in one new filesystem (subvolume
// sc/<name>, snapshots snaps/<name>.<i>), records the kernel's streams, and
// remounts the filesystem read-only for sendfs to read and for comparison.
func buildCorpus(t *testing.T, opts fsOpts, scenarios []scenario) *corpus {
	t.Helper()
	checkNames(t, scenarios)
	c := &corpus{
		fs:     newFS(t, opts),
		broken: map[string]bool{},
	}
	// Stage 0 builds every scenario, stage k applies every k-th change; a
	// snapshot of each scenario follows each stage it took part in.
	stages := 1
	for _, sc := range scenarios {
		stages = max(stages, 1+len(sc.changes))
	}
	for stage := 0; stage < stages; stage++ {
		var active []scenario
		for _, sc := range scenarios {
			if stage > len(sc.changes) || c.broken[sc.name] {
				continue
			}
			d := c.fs.path("sc/" + sc.name)
			fn := sc.setup
			if stage == 0 {
				subvolCreate(t, c.fs, "sc/"+sc.name)
			} else {
				fn = sc.changes[stage-1]
			}
			if !t.Run(fmt.Sprintf("build%d/%s", stage, sc.name), func(t *testing.T) { fn(t, d) }) {
				c.broken[sc.name] = true
				continue
			}
			active = append(active, sc)
		}
		if stage == 1 {
			c.runReuse(t, active)
		}
		for _, sc := range active {
			if !c.broken[sc.name] {
				snapshotRO(t, c.fs, "sc/"+sc.name, snapName(sc, stage))
			}
		}
	}
	c.recordKernel(t, scenarios)
	remountRO(t, c.fs)
	return c
}

// recordKernel sends the kernel's streams of every scenario that was built.
func (c *corpus) recordKernel(t *testing.T, scenarios []scenario) {
	c.fulls, c.incs = map[string][][]byte{}, map[string][][]byte{}
	args := c.variant.args
	for _, sc := range scenarios {
		if c.broken[sc.name] {
			continue
		}
		snap := func(i int) string { return c.fs.path(snapName(sc, i)) }
		c.fulls[sc.name] = append(c.fulls[sc.name], kernelSend(t, c.fs.Mnt, snap(0), "", args...))
		for i := range sc.changes {
			c.incs[sc.name] = append(c.incs[sc.name], kernelSend(t, c.fs.Mnt, snap(i+1), snap(i), args...))
		}
		if n := len(sc.changes); n > 0 && !c.chainsOnly {
			c.fulls[sc.name] = append(c.fulls[sc.name], kernelSend(t, c.fs.Mnt, snap(n), "", args...))
		}
	}
}

// runReuse remounts the filesystem and runs the reuse steps, if any.
func (c *corpus) runReuse(t *testing.T, active []scenario) {
	var reusing []scenario
	for _, sc := range active {
		if sc.reuse != nil && !c.broken[sc.name] {
			reusing = append(reusing, sc)
		}
	}
	if len(reusing) == 0 {
		return
	}
	syncFS(t, c.fs)
	unmount(t, c.fs)
	c.fs.Mount(t, false)
	for _, sc := range reusing {
		d := c.fs.path("sc/" + sc.name)
		if !t.Run("reuse/"+sc.name, func(t *testing.T) { sc.reuse(t, d) }) {
			c.broken[sc.name] = true
		}
	}
}

// selectScenarios keeps the scenarios whose name matches $SENDFS_SCENARIO
// (a regular expression), all when it is not set: building only the
// scenarios at hand makes debugging one fast.
func selectScenarios(t *testing.T, scenarios []scenario) []scenario {
	pattern := os.Getenv("SENDFS_SCENARIO")
	if pattern == "" {
		return scenarios
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		t.Fatalf("SENDFS_SCENARIO: %v", err)
	}
	var kept []scenario
	for _, sc := range scenarios {
		if re.MatchString(sc.name) {
			kept = append(kept, sc)
		}
	}
	if len(kept) == 0 {
		t.Fatalf("SENDFS_SCENARIO=%q matches no scenario", pattern)
	}
	return kept
}

func checkNames(t *testing.T, scenarios []scenario) {
	seen := map[string]bool{}
	for _, sc := range scenarios {
		if seen[sc.name] || strings.ContainsAny(sc.name, "/ ") {
			t.Fatalf("scenario name %q repeated or not a plain name", sc.name)
		}
		seen[sc.name] = true
	}
}

// checkCorpus runs the round trips of every scenario in subtests
// <name>/kernel (the kernel's own streams against the snapshots: validates
// the scenario and the comparison) and <name>/sendfs (our streams).
func checkCorpus(t *testing.T, c *corpus, scenarios []scenario) {
	rk, ro := newReceiver(t), newReceiver(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if c.broken[sc.name] {
				t.Fatal("scenario could not be built (see its build subtest)")
			}
			var k kernelCopies
			t.Run("kernel", func(t *testing.T) { k = c.checkKernel(t, rk, sc) })
			t.Run("sendfs", func(t *testing.T) { c.checkSendfs(t, ro, sc, k) })
			if t.Failed() && sc.describe != nil {
				t.Log(sc.describe())
			}
		})
	}
}

// kernelCopies are where the kernel's streams of a scenario were received:
// chain[i] is snapshot i through the incremental chain, fulls[i] the full
// stream of snapshot 0 and (for chains) of the last snapshot. quirks lists,
// per snapshot name, the differences the kernel's own copies have (see
// kernelQuirk): ours may have them too.
type kernelCopies struct {
	chain, fulls []string
	quirks       map[string][]string
}

// kernelQuirk is the one difference the kernel's own streams are allowed:
// the root directory's mtime. The kernel creates new inodes under orphan
// names in the root and renames them into place; receive's rename touches
// the root, and the kernel sends no utimes for a root that did not change
// (incremental), or sends it before the last orphan rename (full send of a
// deep tree).
const kernelQuirk = `".": mtime`

// checkKernel receives the kernel's chain (full of snapshot 0, then each
// incremental) and its full of the last snapshot, comparing each with its
// snapshot.
func (c *corpus) checkKernel(t *testing.T, r *receiver, sc scenario) kernelCopies {
	fulls, incs := c.fulls[sc.name], c.incs[sc.name]
	k := kernelCopies{quirks: map[string][]string{}}
	check := func(name, got string) {
		seen, _ := c.compare(t, name, got, []string{kernelQuirk})
		k.quirks[name] = append(k.quirks[name], seen...)
	}
	k.chain = []string{r.receive(t, fulls[0])}
	k.fulls = k.chain[:1:1]
	check(snapName(sc, 0), k.chain[0])
	for i, s := range incs {
		k.chain = append(k.chain, r.receive(t, s))
		check(snapName(sc, i+1), k.chain[i+1])
	}
	if len(incs) > 0 && !c.light && !c.chainsOnly {
		k.fulls = append(k.fulls, r.receive(t, fulls[1]))
		check(snapName(sc, len(incs)), k.fulls[1])
	}
	return k
}

// checkSendfs checks our streams of the scenario: the chain (the kernel's
// full of snapshot 0, then our incrementals, each compared with its snapshot
// and the kernel's received copy, no bigger than the kernel's stream by more
// than a few percent), then our fulls of snapshot 0 and of the last one.
// The chain goes first: our full of snapshot 0 carries the same uuid as the
// chain's base, and the chain must find the kernel's copy.
func (c *corpus) checkSendfs(t *testing.T, r *receiver, sc scenario, k kernelCopies) {
	if len(sc.changes) > 0 {
		t.Run("incremental", func(t *testing.T) { c.checkChain(t, r, sc, k) })
		if c.chainsOnly {
			return
		}
	}
	t.Run("full", func(t *testing.T) {
		// c.fulls[i] is the kernel's full of snapshot 0, then of the last;
		// light corpora check only the last.
		snaps := []int{0}
		if n := len(sc.changes); n > 0 {
			snaps = append(snaps, n)
		}
		for i, n := range snaps {
			if c.light && i+1 < len(snaps) {
				continue
			}
			var kernelCopy string
			if i < len(k.fulls) {
				kernelCopy = k.fulls[i]
			}
			c.checkFull(t, r, sc, n, c.fulls[sc.name][i], k, kernelCopy)
		}
	})
}

func (c *corpus) checkChain(t *testing.T, r *receiver, sc scenario, k kernelCopies) {
	r.receive(t, c.fulls[sc.name][0]) // the base, found by uuid from here on
	for i, kstream := range c.incs[sc.name] {
		parent, child := snapName(sc, i), snapName(sc, i+1)
		ours := c.send(t, child, parent)
		if c.light {
			// Random pairs: clone-source choices differ more often.
			if !checkSizeNotWorse(t, len(ours), len(kstream)) {
				if d := diffDumps(dump(t, kstream), dump(t, ours)); d != nil {
					t.Logf("%s → %s: dump differs from the kernel's:\n%s", parent, child, strings.Join(d, "\n"))
				}
			}
		} else {
			checkSizeWithin1Percent(t, len(ours), len(kstream))
			checkDump(t, parent+" → "+child, sc, kstream, ours)
		}
		got := r.receive(t, ours)
		if _, ok := c.compare(t, child, got, k.quirks[child]); !ok {
			t.Fatalf("chain broken at %s; later links not checked", child)
		}
		if i+1 < len(k.chain) {
			compareHoles(t, k.chain[i+1], got)
		}
	}
}

// checkFull checks our full send of snapshot n against the kernel's stream
// and (holes) against the kernel's received copy, if there is one.
func (c *corpus) checkFull(t *testing.T, r *receiver, sc scenario, n int, kstream []byte, k kernelCopies, kernelCopy string) {
	name := snapName(sc, n)
	ours := c.send(t, name, "")
	checkDump(t, name, sc, kstream, ours)
	if !c.light {
		checkSizeWithin1Percent(t, len(ours), len(kstream))
	}
	got := r.receive(t, ours)
	c.compare(t, name, got, k.quirks[name])
	if kernelCopy != "" {
		compareHoles(t, kernelCopy, got)
	}
}

// compare reports every difference between the snapshot name and the
// received tree got, except those starting with one of allowed, which are
// logged and returned; ok is false when anything else differs.
func (c *corpus) compare(t *testing.T, name, got string, allowed []string) (seen []string, ok bool) {
	t.Helper()
	diffs, err := treeDiffs(c.fs.path(name), got)
	if err != nil {
		t.Errorf("compare %s with %s: %v", name, got, err)
		return nil, false
	}
	var real []string
	for _, d := range diffs {
		if p := matchingPrefix(d, allowed); p != "" {
			t.Logf("%s: known kernel quirk: %s", name, d)
			seen = append(seen, p)
		} else {
			real = append(real, d)
		}
	}
	if len(real) > 0 {
		t.Errorf("%s differs from %s in %d ways:\n%s", got, name, len(real), capLines(real))
	}
	return seen, len(real) == 0
}

func matchingPrefix(s string, prefixes []string) string {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return p
		}
	}
	return ""
}

// send runs sendfs for a pair and checks what the CLI promises about the
// stream: --size is exact and two runs give the same bytes; and that the
// library serves any byte range of the same stream (checkRanges).
func (c *corpus) send(t *testing.T, child, parent string) []byte {
	t.Helper()
	args := c.variant.args
	ours := sendfsSend(t, c.fs.Images, child, parent, args...)
	if c.light {
		return ours
	}
	if n, err := sendfsSize(t, c.fs.Images, child, parent, args...); err != nil {
		t.Errorf("sendfs send --size %s: %v", child, err)
	} else if n != int64(len(ours)) {
		t.Errorf("sendfs send --size %s = %d, but the stream has %d bytes", child, n, len(ours))
	}
	again := sendfsSend(t, c.fs.Images, child, parent, args...)
	if string(again) != string(ours) {
		t.Errorf("two sends of %s (parent %q) gave different bytes (%d and %d bytes)", child, parent, len(ours), len(again))
	}
	t.Run("ranges", func(t *testing.T) { checkRanges(t, c.fs.Images, child, parent, ours, c.variant.opts) })
	return ours
}

// checkDump requires our stream's dump to be the kernel's, command for
// command, except for clone sources of the same bytes (or the scenario's
// dumpNote, which then is logged).
func checkDump(t *testing.T, name string, sc scenario, kstream, ours []byte) {
	t.Helper()
	kdump, odump := dump(t, kstream), dump(t, ours)
	if d := diffDumps(kdump, odump); d != nil {
		switch {
		case sameDataDifferentSources(kdump, odump):
			t.Logf("%s: dump differs from the kernel's only in clone sources (allowed, same data):\n%s", name, strings.Join(d, "\n"))
		case sc.dumpNote == "":
			t.Errorf("%s: dump differs from the kernel's:\n%s", name, strings.Join(d, "\n"))
		default:
			t.Logf("%s: dump differs from the kernel's (%s):\n%s", name, sc.dumpNote, strings.Join(d, "\n"))
		}
	}
}

// checkSizeWithin1Percent: our stream may be at most 1% larger than the
// kernel's.
func checkSizeWithin1Percent(t *testing.T, ours, kernel int) {
	t.Helper()
	if ours > kernel+kernel/100 {
		t.Errorf("our stream has %d bytes, the kernel's %d (more than 1%% larger)", ours, kernel)
	}
}

// checkSizeNotWorse allows our incremental stream a few percent (and a
// little slack for tiny streams) over the kernel's.
func checkSizeNotWorse(t *testing.T, ours, kernel int) bool {
	t.Helper()
	if limit := kernel + kernel/20 + 512; ours > limit {
		t.Errorf("our stream has %d bytes, the kernel's %d (more than 5%% + 512 bytes larger)", ours, kernel)
		return false
	}
	return true
}
