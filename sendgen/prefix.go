package sendgen

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// PrefixLimit bounds the reads ReadPrefixAt serves: the first bytes of a
// stream, which a file manager reads from every file to guess its type.
const PrefixLimit = 1 << 20

// errPrefixDone stops the engine once the prefix asked for exists.
var errPrefixDone = errors.New("sendgen: stream prefix complete")

// ReadPrefixAt fills p with the stream's bytes at off, where off+len(p) is
// at most PrefixLimit, by generating the stream from its start and stopping
// as soon as those bytes exist. Its cost follows off+len(p), not the size of
// the stream, and nothing runs on after it returns. Like
// io.ReaderAt it returns io.EOF when the stream ends before p is full.
func (s *Stream) ReadPrefixAt(ctx context.Context, p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	if off < 0 || end > PrefixLimit {
		return 0, fmt.Errorf("sendgen: prefix read of %d bytes at %d is beyond the first %d bytes", len(p), off, PrefixLimit)
	}
	var sink *prefixSink
	err := s.withRefresh(func() error {
		sink = &prefixSink{enc: s.enc, read: s.read, want: end}
		sink.out = appendStreamHeader(make([]byte, 0, end+cmdBufSize), s.enc.proto)
		if int64(len(sink.out)) < end {
			if err := s.runChecked(ctx, sink); err != nil && !errors.Is(err, errPrefixDone) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if off >= int64(len(sink.out)) {
		return 0, io.EOF
	}
	n := copy(p, sink.out[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// prefixSink encodes commands, data included, until want bytes exist.
type prefixSink struct {
	enc  encoder
	read func(*DataRef, []byte) error
	out  []byte
	want int64
}

func (k *prefixSink) emit(c *Command) error {
	if c.Data == nil {
		k.out = k.enc.appendCommand(k.out, c, nil)
	} else {
		buf := getBuf()
		defer putBuf(buf)
		cmd, err := appendData(k.enc.appendPrefix((*buf)[:0], c), c.Data, k.read)
		*buf = cmd
		if err != nil {
			return err
		}
		k.out = append(k.out, cmd...)
	}
	if int64(len(k.out)) >= k.want {
		return errPrefixDone
	}
	return nil
}
