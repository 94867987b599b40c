package sendgen

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"sendfs/btrfsread"
)

// Cmd is a send stream command number.
type Cmd uint16

// Command numbers (btrfs-progs kernel-shared/send.h).
const (
	CmdSubvol       Cmd = 1
	CmdSnapshot     Cmd = 2
	CmdMkfile       Cmd = 3
	CmdMkdir        Cmd = 4
	CmdMknod        Cmd = 5
	CmdMkfifo       Cmd = 6
	CmdMksock       Cmd = 7
	CmdSymlink      Cmd = 8
	CmdRename       Cmd = 9
	CmdLink         Cmd = 10
	CmdUnlink       Cmd = 11
	CmdRmdir        Cmd = 12
	CmdSetXattr     Cmd = 13
	CmdRemoveXattr  Cmd = 14
	CmdWrite        Cmd = 15
	CmdClone        Cmd = 16
	CmdTruncate     Cmd = 17
	CmdChmod        Cmd = 18
	CmdChown        Cmd = 19
	CmdUtimes       Cmd = 20
	CmdEnd          Cmd = 21
	CmdUpdateExtent Cmd = 22
	CmdFallocate    Cmd = 23 // v2
	CmdFileattr     Cmd = 24 // v2
	CmdEncodedWrite Cmd = 25 // v2
	CmdEnableVerity Cmd = 26 // v3
)

// Attr is a send stream attribute (TLV) type.
type Attr uint16

// Attribute types.
const (
	AttrUUID          Attr = 1
	AttrCtransid      Attr = 2
	AttrIno           Attr = 3
	AttrSize          Attr = 4
	AttrMode          Attr = 5
	AttrUID           Attr = 6
	AttrGID           Attr = 7
	AttrRdev          Attr = 8
	AttrCtime         Attr = 9
	AttrMtime         Attr = 10
	AttrAtime         Attr = 11
	AttrOtime         Attr = 12
	AttrXattrName     Attr = 13
	AttrXattrData     Attr = 14
	AttrPath          Attr = 15
	AttrPathTo        Attr = 16
	AttrPathLink      Attr = 17
	AttrFileOffset    Attr = 18
	AttrData          Attr = 19
	AttrCloneUUID     Attr = 20
	AttrCloneCtransid Attr = 21
	AttrClonePath     Attr = 22
	AttrCloneOffset   Attr = 23
	AttrCloneLen      Attr = 24
)

// Command is one send command as the engine builds it: the command number,
// its attributes already TLV-encoded in emission order, and for data
// commands (WRITE) a reference to the file data, which is read only when the
// command's bytes are materialized. The DATA attribute is always last.
type Command struct {
	Cmd   Cmd
	Attrs []byte
	Data  *DataRef
	err   error // the first attribute that cannot be encoded (Err)
}

// Reset empties c for reuse.
func (c *Command) Reset(cmd Cmd) {
	c.Cmd = cmd
	c.Attrs = c.Attrs[:0]
	c.Data = nil
	c.err = nil
}

// Err reports an attribute too long for the stream: a path of PATH_MAX
// bytes or more (ENAMETOOLONG, as the kernel's send fails), or any value
// over the 16-bit TLV length. Such a command must not be emitted.
func (c *Command) Err() error { return c.err }

// Attribute length limits.
const (
	pathMax    = 4096  // PATH_MAX: the receiver's paths include the NUL
	maxAttrLen = 65535 // a TLV length is 16 bits
)

// checkLen records why attribute a of n bytes (value b) cannot be encoded.
func (c *Command) checkLen(a Attr, b []byte) {
	if c.err != nil {
		return
	}
	isPath := a == AttrPath || a == AttrPathTo || a == AttrPathLink || a == AttrClonePath
	switch {
	case isPath && len(b) >= pathMax:
		c.err = fmt.Errorf("path %q... is %d bytes, longer than PATH_MAX (%d): %w", b[:min(len(b), 80)], len(b), pathMax-1, syscall.ENAMETOOLONG)
	case len(b) > maxAttrLen:
		c.err = fmt.Errorf("attribute %d of command %d is %d bytes, more than a stream attribute holds (%d): %w", a, c.Cmd, len(b), maxAttrLen, syscall.E2BIG)
	}
}

func (c *Command) tlvHeader(a Attr, n int) {
	c.Attrs = binary.LittleEndian.AppendUint16(c.Attrs, uint16(a))
	c.Attrs = binary.LittleEndian.AppendUint16(c.Attrs, uint16(n))
}

// U64 appends a u64 attribute.
func (c *Command) U64(a Attr, v uint64) {
	c.tlvHeader(a, 8)
	c.Attrs = binary.LittleEndian.AppendUint64(c.Attrs, v)
}

// Bytes appends a byte-string attribute (paths, names, xattr values). A
// value that is too long is recorded in Err.
func (c *Command) Bytes(a Attr, b []byte) {
	c.checkLen(a, b)
	c.tlvHeader(a, len(b))
	c.Attrs = append(c.Attrs, b...)
}

// UUID appends a uuid attribute.
func (c *Command) UUID(a Attr, u btrfsread.UUID) { c.Bytes(a, u[:]) }

// Timespec appends a timestamp attribute.
func (c *Command) Timespec(a Attr, t btrfsread.Timespec) {
	c.tlvHeader(a, 12)
	c.Attrs = binary.LittleEndian.AppendUint64(c.Attrs, t.Sec)
	c.Attrs = binary.LittleEndian.AppendUint32(c.Attrs, t.Nsec)
}

// DataRef names the file data of a data command without holding it: Len
// bytes of extent Extent of inode Ino in subvolume Subvol, starting Offset
// bytes after the extent's key offset (file offset FileOffset). Zero data
// (a hole written out) has Zero set and no extent. Encoded data
// (ENCODED_WRITE) is the whole extent as stored, Len bytes, not
// decompressed; Offset is then 0.
type DataRef struct {
	Subvol     *btrfsread.Subvolume
	Ino        uint64
	FileOffset uint64
	Extent     btrfsread.FileExtent
	Offset     uint64
	Len        uint32
	Zero       bool
	Encoded    bool
}
