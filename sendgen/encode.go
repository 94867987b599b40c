package sendgen

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
)

// Stream framing (docs/FORMAT.md §1.1). All integers are little-endian.
const (
	streamMagic     = "btrfs-stream\x00"
	streamHeaderLen = len(streamMagic) + 4
	cmdHeaderLen    = 10 // u32 payload length, u16 cmd, u32 crc
	crcOffset       = 6  // of the crc field inside the command header
	tlvHeaderLen    = 4  // u16 type, u16 length
	maxTLVLen       = math.MaxUint16
)

// castagnoli is built once: MakeTable picks the hardware implementation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// rawCRC32C is the send stream's checksum: crc32c with seed 0 and no final
// inversion (crc32.Update inverts on entry and exit, so undo both).
func rawCRC32C(b []byte) uint32 {
	return ^crc32.Update(^uint32(0), castagnoli, b)
}

// encoder frames commands for one protocol version.
type encoder struct {
	proto int
}

func appendStreamHeader(dst []byte, proto int) []byte {
	dst = append(dst, streamMagic...)
	return binary.LittleEndian.AppendUint32(dst, uint32(proto))
}

// dataHeaderLen is the size of the DATA attribute's header: a full TLV header
// in protocol 1; from protocol 2 on only the type, the data running to the
// end of the command.
func (e encoder) dataHeaderLen(c *Command) int {
	switch {
	case c.Data == nil:
		return 0
	case e.proto >= 2:
		return 2
	default:
		return tlvHeaderLen
	}
}

// payloadLen is the command's length field: everything after the header.
// It is the one place that knows a command's size; commandLen (counting) and
// appendPrefix (materializing) both derive from it.
func (e encoder) payloadLen(c *Command) int64 {
	n := int64(len(c.Attrs)) + int64(e.dataHeaderLen(c))
	if c.Data != nil {
		n += int64(c.Data.Len)
	}
	return n
}

// commandLen is the encoded length of c, computed without its data.
func (e encoder) commandLen(c *Command) int64 {
	return cmdHeaderLen + e.payloadLen(c)
}

// check rejects commands the protocol cannot frame.
func (e encoder) check(c *Command) error {
	if c.Data != nil && e.proto < 2 && c.Data.Len > maxTLVLen {
		return fmt.Errorf("sendgen: %d bytes of data in one command exceed protocol %d's limit of %d", c.Data.Len, e.proto, maxTLVLen)
	}
	if n := e.payloadLen(c); n > math.MaxUint32 {
		return fmt.Errorf("sendgen: command %d has %d bytes of payload, more than a u32 length can say", c.Cmd, n)
	}
	return nil
}

// appendPrefix appends every byte of c that precedes its data: the header
// with a zero crc, the attributes and the DATA attribute's header. For a
// command without data that is the whole command, still unsealed.
func (e encoder) appendPrefix(dst []byte, c *Command) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(e.payloadLen(c)))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(c.Cmd))
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = append(dst, c.Attrs...)
	if c.Data != nil {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(AttrData))
		if e.proto < 2 {
			dst = binary.LittleEndian.AppendUint16(dst, uint16(c.Data.Len))
		}
	}
	return dst
}

// appendCommand appends the whole encoded command c, with data (exactly
// c.Data.Len bytes, nil for a command without data) as its DATA attribute.
func (e encoder) appendCommand(dst []byte, c *Command, data []byte) []byte {
	start := len(dst)
	dst = e.appendPrefix(dst, c)
	dst = append(dst, data...)
	sealCommand(dst[start:])
	return dst
}

// sealCommand stores the crc of one whole encoded command (whose crc field
// is still zero) in its header.
func sealCommand(cmd []byte) {
	binary.LittleEndian.PutUint32(cmd[crcOffset:], rawCRC32C(cmd))
}
