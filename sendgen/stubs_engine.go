package sendgen

// STUB owned by the engine author: run is the send engine (full and
// incremental). Replaced by engine*.go.

import (
	"context"

	"sendfs/btrfsread"
)

// emitter receives the commands of a stream in order, starting with SUBVOL
// or SNAPSHOT and ending with END (the stream header is not a command and is
// written by the encoder). c is only valid during the call: an emitter that
// keeps anything copies it.
type emitter interface {
	emit(c *Command) error
}

// run generates the commands of the stream for child, incremental from
// parent when parent is not nil. It reads metadata only, never file data:
// data commands carry DataRefs. The same inputs always give the same
// commands.
func run(ctx context.Context, child, parent *btrfsread.Subvolume, opts Options, out emitter) error {
	panic("unimplemented")
}
