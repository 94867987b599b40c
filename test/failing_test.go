package test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"sendfs/internal/testimage"
)

// A member device that fails reads on a range. The kernel here has no
// device-mapper, so the "error" target is built from what it has: a FUSE
// file (served by the test binary) that reads as an image file and answers
// EIO inside the range, under a read-only loop device, so that sendfs gets
// the block device's own I/O errors.

// failingFile serves img, failing every read that touches [from, to).
type failingFile struct {
	fs.Inode
	img      *os.File
	size     int64
	from, to int64
}

var (
	_ fs.NodeGetattrer = (*failingFile)(nil)
	_ fs.NodeOpener    = (*failingFile)(nil)
	_ fs.NodeReader    = (*failingFile)(nil)
)

func (f *failingFile) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFREG | 0o444
	out.Size = uint64(f.size)
	return 0
}

func (f *failingFile) Open(context.Context, uint32) (fs.FileHandle, uint32, syscall.Errno) {
	// Every read reaches Read: nothing is served from the page cache.
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *failingFile) Read(_ context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < f.to && off+int64(len(dest)) > f.from {
		return nil, syscall.EIO
	}
	n, err := f.img.ReadAt(dest, off)
	if err != nil && n == 0 && off < f.size {
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// failingDevice returns a loop device that reads as img except that every
// read touching the byte range [from, to) fails with EIO. The loop device
// and the FUSE mount under it are removed at the end of the test.
func failingDevice(t *testing.T, img string, from, to int64) string {
	t.Helper()
	requireFUSE(t)
	f, err := os.Open(img)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	must(t, err)
	dir := filepath.Join(t.TempDir(), "failing")
	must(t, os.Mkdir(dir, 0o755))
	node := &failingFile{img: f, size: st.Size(), from: from, to: to}
	root := &fs.Inode{}
	server, err := fs.Mount(dir, root, &fs.Options{
		OnAdd: func(ctx context.Context) {
			root.AddChild("dev.img", root.NewPersistentInode(ctx, node, fs.StableAttr{Mode: fuse.S_IFREG}), false)
		},
		MountOptions: fuse.MountOptions{FsName: failingMountPrefix + strconv.Itoa(os.Getpid()), Name: "sendfs-test", Options: []string{"ro"}},
	})
	must(t, err)
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return testimage.Attach(t, []string{filepath.Join(dir, "dev.img")}, "", true).Loops[0]
}
