package test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sendfs/internal/testenv"
	"sendfs/internal/testimage"
)

// TestDeepMovesRepro sends the snapshot pairs of the reproduction images of
// deep directory reshuffles (testdata/repro, 1,200-1,500 random operations
// per snapshot, mostly directory renames, moves and swaps in deep trees).
// Every one of our streams must rebuild its child; where the kernel's send
// works, ours must be byte for byte the kernel's stream. For the other pairs
// the kernel 6.18 fails (its ioctl errors out, or receive rejects its
// stream): what it does is logged, not required, so that a fixed kernel
// does not fail the test.
func TestDeepMovesRepro(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("zstd"); err != nil {
		testenv.Unavailable(t, "zstd is not installed (needed to unpack testdata/repro)")
	}
	cases := []struct {
		image, parent, child string
		kernelOK             bool
	}{
		{"deep-moves-a", "snaps/s1", "snaps/s3", true},
		{"deep-moves-a", "snaps/s3", "snaps/s1", false},
		{"deep-moves-b", "snaps/s1", "snaps/s2", true},
		{"deep-moves-kernel-stream-rejected", "snaps/s1", "snaps/s2", false},
	}
	images := map[string]*btrfsFS{}
	for _, tc := range cases {
		if images[tc.image] == nil {
			images[tc.image] = attachImage(t, unpackRepro(t, tc.image))
		}
	}
	for _, tc := range cases {
		name := tc.image + "/" + filepath.Base(tc.parent) + "-" + filepath.Base(tc.child)
		t.Run(name, func(t *testing.T) {
			fs := images[tc.image]
			parent, child := fs.path(tc.parent), fs.path(tc.child)
			ours := sendfsSend(t, fs.Images, tc.child, tc.parent)
			kernel, kerr := kernelSendErr(t, child, parent)
			switch {
			case tc.kernelOK && kerr != nil:
				t.Fatalf("the kernel's send of this pair works on 6.18: %v", kerr)
			case tc.kernelOK:
				if d := diffDumps(dump(t, kernel), dump(t, ours)); d != nil || string(kernel) != string(ours) {
					t.Errorf("our stream (%d bytes) differs from the kernel's (%d bytes):\n%s", len(ours), len(kernel), strings.Join(d, "\n"))
				}
			case kerr != nil:
				t.Logf("the kernel's send fails, as on 6.18: %v", kerr)
			default:
				r := newReceiver(t)
				if _, err := r.receiveErr(t, kernelSend(t, fs.Mnt, parent, ""), kernel); err != nil {
					t.Logf("receive rejects the kernel's stream, as on 6.18: %v", err)
				} else {
					t.Logf("the kernel's stream applies here; 6.18's did not")
				}
			}
			r := newReceiver(t)
			got := r.receive(t, kernelSend(t, fs.Mnt, parent, ""), ours)
			c := &corpus{fs: fs}
			c.compare(t, tc.child, got, []string{kernelQuirk})
		})
	}
}

// unpackRepro decompresses testdata/repro/NAME.img.zst (a sparse 2 GiB
// image) into the test's temp dir.
func unpackRepro(t *testing.T, name string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), name+".img")
	run(t, "zstd", "-q", "-d", "--sparse", "-o", img, filepath.Join("testdata", "repro", name+".img.zst"))
	return img
}

// attachImage attaches a filesystem image read-only to a loop device and
// mounts it read-only; both are undone in t.Cleanup, also on failure.
func attachImage(t *testing.T, img string) *btrfsFS {
	t.Helper()
	dir := filepath.Dir(img)
	if err := markOwner(dir); err != nil {
		t.Fatal(err)
	}
	fs := &btrfsFS{testimage.Attach(t, []string{img}, filepath.Join(dir, "mnt"), true)}
	fs.Mount(t, true)
	return fs
}

// TestGrowOverSharedTail sends, in reverse order, snapshots of a file cut
// within its last block: the file grows back over the tail of an extent
// both snapshots share. The kernel 6.18 sends only a truncate, and its
// received file has a zero where the snapshot has data; ours must have the
// data. The kernel's result is logged, not required.
func TestGrowOverSharedTail(t *testing.T) {
	requireRoot(t)
	fs := newFS(t, fsOpts{Size: 1 << 30})
	sv := subvolCreate(t, fs, "sv")
	writeFile(t, j(sv, "f"), random(3*4096, 1))
	writeFile(t, j(sv, "inline"), random(100, 2))
	s1 := snapshotRO(t, fs, "sv", "s1")
	mustTruncate(t, j(sv, "f"), 3*4096-1)
	mustTruncate(t, j(sv, "inline"), 50)
	s2 := snapshotRO(t, fs, "sv", "s2")
	full, kinc := kernelSend(t, fs.Mnt, s2, ""), kernelSend(t, fs.Mnt, s1, s2)
	remountRO(t, fs)
	r := newReceiver(t)
	if diffs, err := treeDiffs(s1, r.receive(t, full, kinc)); err != nil || len(diffs) > 0 {
		t.Logf("the kernel's stream rebuilds another tree (as 6.18's does): %v %s", err, capLines(diffs))
	}
	ours := sendfsSend(t, fs.Images, "s1", "s2")
	compareTrees(t, s1, r.receive(t, full, ours))
}
