package fusefs

import "github.com/hanwen/go-fuse/v2/fs"

// The operations each node type implements. Writes are refused by the "ro"
// mount option in the kernel and, for stream files, by Open and Setattr.
var (
	_ = (fs.NodeGetattrer)((*dir)(nil))
	_ = (fs.NodeLookuper)((*dir)(nil))
	_ = (fs.NodeReaddirer)((*dir)(nil))
	_ = (fs.NodeStatfser)((*dir)(nil))

	_ = (fs.NodeGetattrer)((*streamFile)(nil))
	_ = (fs.NodeSetattrer)((*streamFile)(nil))
	_ = (fs.NodeOpener)((*streamFile)(nil))
	_ = (fs.NodeReader)((*streamFile)(nil))
	_ = (fs.NodeStatfser)((*streamFile)(nil))
	_ = (fs.FileReleaser)((*streamHandle)(nil))

	_ = (fs.NodeGetattrer)((*link)(nil))
	_ = (fs.NodeReadlinker)((*link)(nil))
	_ = (fs.NodeStatfser)((*link)(nil))
)
