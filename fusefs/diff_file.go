package fusefs

import (
	"bytes"
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"sendfs/btrfsread"
	"sendfs/sendgen"
	"sendfs/snapdiff"
)

// diffSuffix ends the name of a diff file: from/<parent>.diff.
const diffSuffix = ".diff"

// diffFile is from/<parent>.diff: the text `sendfs diff -p <parent>`
// prints, computed on lookup (a metadata pass, what the stream's size
// costs) and held by the node. from/ does not list diff files, so that a
// listing costs no more than the streams' sizes; they answer by name.
type diffFile struct {
	fs.Inode
	statfsNode
	r     *Root
	ino   uint64
	mtime btrfsread.Timespec
	text  []byte
}

// differ computes the diff text of child from parent; nil serves none.
type differ func(ctx context.Context, child, parent *btrfsread.Subvolume) ([]byte, error)

// diffText is the differ of real mounts: the engine's commands for the
// pair, with the default stream options (the diff does not depend on the
// form the mount serves streams in).
func diffText(ctx context.Context, child, parent *btrfsread.Subvolume) ([]byte, error) {
	s, err := sendgenOpener(sendgen.Options{}, nil)(child, parent)
	if err != nil {
		return nil, err
	}
	changes, err := snapdiff.Compute(ctx, s.(sendgenStream).Stream)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = snapdiff.WriteText(&b, changes)
	return b.Bytes(), err
}

func (r *Root) newDiffFile(ctx context.Context, child, parent *snapshot) (node, syscall.Errno) {
	if r.diff == nil {
		return nil, syscall.ENOENT
	}
	text, err := r.diff(ctx, child.sv, parent.sv)
	if err != nil {
		if ctx.Err() != nil {
			return nil, syscall.EINTR
		}
		r.log.Error("diff failed", "diff", "snapshots/"+child.name+"/"+fromName+"/"+parent.name+diffSuffix, "err", err)
		return nil, syscall.EIO
	}
	ino := inodeNumber(kindDiff, child.sv.ID, parent.sv.ID)
	return &diffFile{r: r, ino: ino, mtime: creationTime(child.sv), text: text}, 0
}

func (f *diffFile) stable() fs.StableAttr { return fs.StableAttr{Mode: fuse.S_IFREG, Ino: f.ino} }

func (f *diffFile) fillAttr(out *fuse.Attr) {
	out.Ino = f.ino
	out.Mode = fuse.S_IFREG | 0o400
	out.Nlink = 1
	out.Size = uint64(len(f.text))
	out.Blocks = (out.Size + 511) / 512
	f.r.fillCommon(out, f.mtime)
}

func (f *diffFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.fillAttr(&out.Attr)
	return 0
}

func (f *diffFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&writeFlags != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *diffFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	end := min(off+int64(len(dest)), int64(len(f.text)))
	if off >= end {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(f.text[off:end]), 0
}
