package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// statfsNode answers statfs(2) for any node: no space (the streams take
// none), but a block size and the name length limit, which tools read
// through pathconf.
type statfsNode struct{}

func (statfsNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	*out = fuse.StatfsOut{Bsize: 4096, Frsize: 4096, NameLen: 255}
	return 0
}
