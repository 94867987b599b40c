package sendgen

import "encoding/binary"

// Attributes of protocol 2 (btrfs-progs kernel-shared/send.h).
const (
	AttrFallocateMode    Attr = 25
	AttrFileattr         Attr = 26
	AttrUnencodedFileLen Attr = 27
	AttrUnencodedLen     Attr = 28
	AttrUnencodedOffset  Attr = 29
	AttrCompression      Attr = 30
	AttrEncryption       Attr = 31
)

// U32 appends a u32 attribute (FALLOCATE_MODE, COMPRESSION, ENCRYPTION).
func (c *Command) U32(a Attr, v uint32) {
	c.tlvHeader(a, 4)
	c.Attrs = binary.LittleEndian.AppendUint32(c.Attrs, v)
}
