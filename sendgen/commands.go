package sendgen

import (
	"context"
	"encoding/binary"

	"sendfs/btrfsread"
)

// Commands runs the engine over the stream's metadata, without reading file
// data, and calls fn with each command in stream order (SUBVOL or SNAPSHOT
// first, END last): what a diff or an index needs, for what Size costs. c
// is only valid during the call.
func (s *Stream) Commands(ctx context.Context, fn func(c *Command) error) error {
	return s.runChecked(ctx, emitFunc(fn))
}

// emitFunc makes a function an emitter.
type emitFunc func(c *Command) error

func (f emitFunc) emit(c *Command) error { return f(c) }

// Subvolumes returns the subvolumes of the stream: the one sent and the
// parent (nil for a full stream).
func (s *Stream) Subvolumes() (child, parent *btrfsread.Subvolume) {
	child, parent, _ = s.pair()
	return child, parent
}

// Attr returns the value of c's first attribute of type a (for data
// commands, the attributes before the data), or nil.
func (c *Command) Attr(a Attr) []byte {
	attrs := c.Attrs
	for len(attrs) >= tlvHeaderLen {
		typ := Attr(binary.LittleEndian.Uint16(attrs))
		n := int(binary.LittleEndian.Uint16(attrs[2:]))
		attrs = attrs[tlvHeaderLen:]
		if n > len(attrs) {
			return nil
		}
		if typ == a {
			return attrs[:n]
		}
		attrs = attrs[n:]
	}
	return nil
}
