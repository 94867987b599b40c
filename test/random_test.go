package test

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRandomIncremental: from each seed, a random tree, a snapshot, N random
// operations, another snapshot; the kernel's full of the first followed by
// our incremental must rebuild the second. Many seeds share one filesystem.
//
//	SENDFS_SEEDS=N    number of seeds (default defaultSeeds), seeds 1..N
//	SENDFS_SEED=S     only seed S (replay a failure; its operations are logged)
//	SENDFS_RANDOM_OPS=N operations per seed (default 40)
//	SENDFS_SEND_VARIANT=V send every stream, the kernel's and ours, with the
//	                  options of protocol variant V (proto2, compressed-data)
func TestRandomIncremental(t *testing.T) {
	requireRoot(t)
	seeds := randomSeeds(t, "SENDFS_SEEDS", defaultSeeds)
	variant := envVariant(t)
	nops := envInt(t, "SENDFS_RANDOM_OPS", 40)
	const perImage = 100
	for start := 0; start < len(seeds); start += perImage {
		batch := seeds[start:min(start+perImage, len(seeds))]
		t.Run(fmt.Sprintf("seeds-%d-%d", batch[0], batch[len(batch)-1]), func(t *testing.T) {
			var scenarios []scenario
			for _, seed := range batch {
				scenarios = append(scenarios, randomScenario(seed, nops))
			}
			c := buildCorpus(t, fsOpts{Size: 16 << 30}, scenarios)
			c.light = true
			if variant.name != "" {
				c = c.withVariant(t, variant, scenarios, false)
			}
			checkCorpus(t, c, scenarios)
			t.Run("diff", func(t *testing.T) { checkDiffs(t, c, scenarios) })
		})
	}
}

const defaultSeeds = 300

// randomSeeds returns the seeds to run: $SENDFS_SEED alone, or 1..$envName
// (def when it is not set).
func randomSeeds(t *testing.T, envName string, def int) []uint64 {
	if s := os.Getenv("SENDFS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SENDFS_SEED=%q: %v", s, err)
		}
		return []uint64{seed}
	}
	n := envInt(t, envName, def)
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	return seeds
}

// envVariant is the protocol variant $SENDFS_SEND_VARIANT names (none when
// unset: protocol 1).
func envVariant(t *testing.T) sendVariant {
	name := os.Getenv("SENDFS_SEND_VARIANT")
	if name == "" {
		return sendVariant{}
	}
	for _, v := range protocolVariants {
		if v.name == name {
			return v
		}
	}
	t.Fatalf("SENDFS_SEND_VARIANT=%q: want one of proto2, compressed-data", name)
	return sendVariant{}
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

// randomScenario builds a scenario whose setup and change are driven by
// seed; the operations it ran are logged if it fails.
func randomScenario(seed uint64, nops int) scenario {
	g := &randomGen{seed: seed}
	return scenario{
		name: fmt.Sprintf("seed-%d", seed),
		setup: func(t testing.TB, d string) {
			g.start(t, d, 1)
			for i := 0; i < 25; i++ {
				g.op(g.r.IntN(7)) // creations only
			}
		},
		changes: []step{func(t testing.TB, d string) {
			g.start(t, d, 2)
			for i := 0; i < nops; i++ {
				g.op(g.r.IntN(len(randomOps)))
			}
		}},
		describe: func() string {
			return fmt.Sprintf("replay with SENDFS_SEED=%d; operations:\n  %s", seed, strings.Join(g.log, "\n  "))
		},
	}
}

// randomGen applies random operations to one tree and logs them.
type randomGen struct {
	seed uint64
	r    *rand.Rand
	t    testing.TB
	root string
	log  []string
	n    int  // counter for unique content seeds
	wide bool // names also from n0..n<wideNames-1>
	// walked caches paths by kind, nil when the tree may have changed.
	walked map[string][]string
}

func (g *randomGen) start(t testing.TB, root string, phase uint64) {
	g.t, g.root, g.walked = t, root, nil
	g.r = rand.New(rand.NewPCG(g.seed, phase))
	g.log = append(g.log, fmt.Sprintf("-- phase %d", phase))
}

// randomOps are the operations, creations first (setup uses only those).
var randomOps = []func(g *randomGen){
	(*randomGen).createFile, (*randomGen).createFile, (*randomGen).mkdir, (*randomGen).mkdir,
	(*randomGen).symlink, (*randomGen).special, (*randomGen).link,
	(*randomGen).write, (*randomGen).write, (*randomGen).truncate, (*randomGen).fallocate, (*randomGen).punch,
	(*randomGen).remove, (*randomGen).rename, (*randomGen).rename, (*randomGen).rename, (*randomGen).rmdir,
	(*randomGen).chmod, (*randomGen).chown, (*randomGen).utimes, (*randomGen).setxattr, (*randomGen).removexattr,
	(*randomGen).reflink,
}

func (g *randomGen) op(i int) { randomOps[i](g) }

// names is a small pool so that names collide and get reused.
var names = []string{"a", "b", "c", "d", "e", "f", "g", "h", "long-name-" + strings.Repeat("x", 40), "ü"}

func (g *randomGen) name() string {
	if g.wide && g.r.IntN(3) > 0 {
		return "n" + strconv.Itoa(g.r.IntN(wideNames))
	}
	return names[g.r.IntN(len(names))]
}

// wideNames is the size of the wider name space of trees with many
// directories (randomGen.wide), where the small pool would make most
// creations and renames fail.
const wideNames = 400

// paths lists the tree's entries ("." for the root) in a stable order,
// filtered by kind: "dir", "file", "any" (not the root). One walk serves
// the picks of one operation.
func (g *randomGen) paths(kind string) []string {
	if g.walked == nil {
		g.walked = map[string][]string{}
		filepath.WalkDir(g.root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			rel, _ := filepath.Rel(g.root, p)
			if d.IsDir() {
				g.walked["dir"] = append(g.walked["dir"], rel)
			}
			if d.Type().IsRegular() {
				g.walked["file"] = append(g.walked["file"], rel)
			}
			if rel != "." {
				g.walked["any"] = append(g.walked["any"], rel)
			}
			return nil
		})
		for _, ps := range g.walked {
			sort.Strings(ps)
		}
	}
	return g.walked[kind]
}

// pick returns a random entry of the kind, "" if there is none.
func (g *randomGen) pick(kind string) string {
	ps := g.paths(kind)
	if len(ps) == 0 {
		return ""
	}
	return ps[g.r.IntN(len(ps))]
}

func (g *randomGen) abs(rel string) string { return filepath.Join(g.root, rel) }

// do logs an operation and its error, if any: an operation the tree does
// not allow (a name taken, a directory not empty) is part of the sequence.
func (g *randomGen) do(desc string, err error) {
	g.walked = nil // even a failed operation may have changed something
	if err != nil {
		desc += fmt.Sprintf(" (failed: %v)", unwrapErrno(err))
	}
	g.log = append(g.log, desc)
}

func unwrapErrno(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	if le, ok := err.(*os.LinkError); ok {
		return le.Err
	}
	return err
}

// newPath returns a fresh relative path: a random name in a random dir.
func (g *randomGen) newPath() string { return filepath.Join(g.pick("dir"), g.name()) }

func (g *randomGen) data() []byte {
	g.n++
	sizes := []int{0, 1, 100, 2048, 3000, 4096, 5000, 70000, 200000}
	n := sizes[g.r.IntN(len(sizes))]
	if g.r.IntN(2) == 0 {
		return patterned(n, g.seed*1000+uint64(g.n))
	}
	return random(n, g.seed*1000+uint64(g.n))
}

func (g *randomGen) createFile() {
	p, data := g.newPath(), g.data()
	f, err := os.OpenFile(g.abs(p), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err == nil {
		_, err = f.Write(data)
		f.Close()
	}
	g.do(fmt.Sprintf("create %s (%d bytes)", p, len(data)), err)
}

func (g *randomGen) mkdir() {
	p := g.newPath()
	g.do("mkdir "+p, os.Mkdir(g.abs(p), 0o755))
}

func (g *randomGen) symlink() {
	p, target := g.newPath(), g.name()
	g.do(fmt.Sprintf("symlink %s -> %s", p, target), os.Symlink(target, g.abs(p)))
}

func (g *randomGen) special() {
	p := g.newPath()
	mode := []uint32{syscall.S_IFIFO | 0o644, syscall.S_IFCHR | 0o600, syscall.S_IFSOCK | 0o755}[g.r.IntN(3)]
	g.do(fmt.Sprintf("mknod %s %o", p, mode), unix.Mknod(g.abs(p), mode, int(unix.Mkdev(1, uint32(g.r.IntN(9))))))
}

func (g *randomGen) link() {
	src, dst := g.pick("file"), g.newPath()
	if src == "" {
		return
	}
	g.do(fmt.Sprintf("link %s %s", src, dst), os.Link(g.abs(src), g.abs(dst)))
}

func (g *randomGen) openFile(desc string, fn func(f *os.File, size int64) (string, error)) {
	p := g.pick("file")
	if p == "" {
		return
	}
	f, err := os.OpenFile(g.abs(p), os.O_WRONLY, 0)
	if err != nil {
		g.do(desc+" "+p, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		g.do(desc+" "+p, err)
		return
	}
	what, err := fn(f, st.Size())
	g.do(fmt.Sprintf("%s %s %s", desc, p, what), err)
}

// offset is a random offset within or a little past size.
func (g *randomGen) offset(size int64) int64 {
	if g.r.IntN(3) == 0 {
		return int64(g.r.IntN(4)) * 4096 // aligned, near the start
	}
	return g.r.Int64N(size + 100000)
}

func (g *randomGen) write() {
	g.openFile("write", func(f *os.File, size int64) (string, error) {
		off, data := g.offset(size), g.data()
		_, err := f.WriteAt(data, off)
		return fmt.Sprintf("at %d, %d bytes", off, len(data)), err
	})
}

func (g *randomGen) truncate() {
	g.openFile("truncate", func(f *os.File, size int64) (string, error) {
		n := g.offset(size)
		return fmt.Sprint("to ", n), f.Truncate(n)
	})
}

func (g *randomGen) fallocate() {
	g.openFile("fallocate", func(f *os.File, size int64) (string, error) {
		off, n := g.offset(size), 1+g.r.Int64N(200000)
		mode := uint32(0)
		if g.r.IntN(2) == 0 {
			mode = unix.FALLOC_FL_KEEP_SIZE
		}
		return fmt.Sprintf("[%d,+%d) mode %d", off, n, mode), unix.Fallocate(int(f.Fd()), mode, off, n)
	})
}

func (g *randomGen) punch() {
	g.openFile("punch", func(f *os.File, size int64) (string, error) {
		off, n := g.offset(size), 1+g.r.Int64N(100000)
		return fmt.Sprintf("[%d,+%d)", off, n), unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	})
}

func (g *randomGen) remove() {
	p := g.pick("any")
	if p == "" {
		return
	}
	if g.r.IntN(4) == 0 {
		g.do("rm -r "+p, os.RemoveAll(g.abs(p)))
		return
	}
	g.do("unlink "+p, syscall.Unlink(g.abs(p)))
}

func (g *randomGen) rmdir() {
	p := g.pick("dir")
	if p == "." || p == "" {
		return
	}
	g.do("rmdir "+p, syscall.Rmdir(g.abs(p)))
}

// rename moves any entry to a random place, possibly over an existing name;
// the kernel refuses a directory moved under itself.
func (g *randomGen) rename() {
	src := g.pick("any")
	if src == "" {
		return
	}
	dst := g.newPath()
	if g.r.IntN(3) == 0 {
		dst = g.pick("any") // over an existing entry
	}
	g.do(fmt.Sprintf("rename %s %s", src, dst), syscall.Rename(g.abs(src), g.abs(dst)))
}

func (g *randomGen) chmod() {
	p := g.pick("any")
	if p == "" || g.isSymlink(p) {
		return
	}
	mode := uint32(g.r.IntN(0o10000))
	if g.isDir(p) {
		mode |= 0o700 // keep the tree walkable
	}
	g.do(fmt.Sprintf("chmod %04o %s", mode, p), syscall.Chmod(g.abs(p), mode))
}

func (g *randomGen) isSymlink(p string) bool {
	st, err := os.Lstat(g.abs(p))
	return err == nil && st.Mode()&os.ModeSymlink != 0
}

func (g *randomGen) isDir(p string) bool {
	st, err := os.Lstat(g.abs(p))
	return err == nil && st.IsDir()
}

func (g *randomGen) chown() {
	p := g.pick("any")
	if p == "" {
		return
	}
	uid, gid := g.r.IntN(3)*1000, g.r.IntN(3)*500
	g.do(fmt.Sprintf("chown %d:%d %s", uid, gid, p), os.Lchown(g.abs(p), uid, gid))
}

func (g *randomGen) utimes() {
	p := g.pick("any")
	if p == "" {
		return
	}
	tm := time.Unix(1e9+g.r.Int64N(1e9), g.r.Int64N(1e9))
	tsp := []unix.Timespec{unix.NsecToTimespec(tm.UnixNano()), unix.NsecToTimespec(tm.UnixNano())}
	g.do(fmt.Sprintf("utimes %s %d", p, tm.UnixNano()), unix.UtimesNanoAt(unix.AT_FDCWD, g.abs(p), tsp, unix.AT_SYMLINK_NOFOLLOW))
}

func (g *randomGen) setxattr() {
	p := g.pick("any")
	if p == "" || g.isSymlink(p) {
		return
	}
	name, val := "user."+g.name(), g.data()
	if len(val) > 3000 {
		val = val[:3000]
	}
	g.do(fmt.Sprintf("setxattr %s %s (%d bytes)", p, name, len(val)), unix.Lsetxattr(g.abs(p), name, val, 0))
}

func (g *randomGen) removexattr() {
	p := g.pick("any")
	if p == "" || g.isSymlink(p) {
		return
	}
	name := "user." + g.name()
	g.do(fmt.Sprintf("removexattr %s %s", p, name), unix.Lremovexattr(g.abs(p), name))
}

// reflink clones a 4 KiB-aligned range of one file into another (or a new
// file), the way cp --reflink and deduplication tools share extents.
func (g *randomGen) reflink() {
	src := g.pick("file")
	if src == "" {
		return
	}
	dst := g.pick("file")
	if g.r.IntN(3) == 0 || dst == "" {
		dst = g.newPath()
	}
	s, err := os.Open(g.abs(src))
	if err != nil {
		g.do("reflink "+src, err)
		return
	}
	defer s.Close()
	// O_NONBLOCK: dst may name a fifo, whose open would wait for a reader.
	d, err := os.OpenFile(g.abs(dst), os.O_WRONLY|os.O_CREATE|syscall.O_NONBLOCK, 0o644)
	if err != nil {
		g.do("reflink to "+dst, err)
		return
	}
	defer d.Close()
	st, _ := s.Stat()
	blocks := st.Size() / 4096
	if blocks == 0 {
		g.do(fmt.Sprintf("reflink %s %s whole", src, dst), unix.IoctlFileClone(int(d.Fd()), int(s.Fd())))
		return
	}
	srcOff := g.r.Int64N(blocks) * 4096
	n := (1 + g.r.Int64N(blocks-srcOff/4096)) * 4096
	dstOff := int64(g.r.IntN(64)) * 4096
	g.do(fmt.Sprintf("reflink %s[%d,+%d) %s@%d", src, srcOff, n, dst, dstOff), unix.IoctlFileCloneRange(int(d.Fd()), &unix.FileCloneRange{
		Src_fd: int64(s.Fd()), Src_offset: uint64(srcOff), Src_length: uint64(n), Dest_offset: uint64(dstOff),
	}))
}
