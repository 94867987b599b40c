package sendgen

import (
	"bytes"
	"fmt"
	"math/bits"

	"sendfs/btrfsread"
)

// Commands that name an inode by its current path.

func (s *sendCtx) sendRename(from, to []byte) error {
	c := s.begin(CmdRename)
	c.Bytes(AttrPath, from)
	c.Bytes(AttrPathTo, to)
	return s.emit()
}

func (s *sendCtx) sendLink(path, target []byte) error {
	c := s.begin(CmdLink)
	c.Bytes(AttrPath, path)
	c.Bytes(AttrPathLink, target)
	return s.emit()
}

func (s *sendCtx) sendUnlink(path []byte) error {
	s.begin(CmdUnlink).Bytes(AttrPath, path)
	return s.emit()
}

func (s *sendCtx) sendRmdir(path []byte) error {
	s.begin(CmdRmdir).Bytes(AttrPath, path)
	return s.emit()
}

// beginForInode starts cmd with the current path of (ino, gen) as PATH.
func (s *sendCtx) beginForInode(cmd Cmd, ino, gen uint64) (*Command, error) {
	p, err := s.curPath(ino, gen)
	if err != nil {
		return nil, err
	}
	c := s.begin(cmd)
	c.Bytes(AttrPath, p)
	return c, nil
}

func (s *sendCtx) sendTruncate(ino, gen, size uint64) error {
	c, err := s.beginForInode(CmdTruncate, ino, gen)
	if err != nil {
		return err
	}
	c.U64(AttrSize, size)
	return s.emit()
}

func (s *sendCtx) sendChmod(ino, gen uint64, mode uint32) error {
	c, err := s.beginForInode(CmdChmod, ino, gen)
	if err != nil {
		return err
	}
	c.U64(AttrMode, uint64(mode&0o7777))
	return s.emit()
}

func (s *sendCtx) sendChown(ino, gen uint64, uid, gid uint32) error {
	c, err := s.beginForInode(CmdChown, ino, gen)
	if err != nil {
		return err
	}
	c.U64(AttrUID, uint64(uid))
	c.U64(AttrGID, uint64(gid))
	return s.emit()
}

// sendUtimes sends the times the inode has in the send tree.
func (s *sendCtx) sendUtimes(ino, gen uint64) error {
	ii, err := s.inodes.item(s.send, ino)
	if err != nil {
		return err
	}
	c, err := s.beginForInode(CmdUtimes, ino, gen)
	if err != nil {
		return err
	}
	c.Timespec(AttrAtime, ii.Atime)
	c.Timespec(AttrMtime, ii.Mtime)
	c.Timespec(AttrCtime, ii.Ctime)
	if s.opts.protocol() >= 2 {
		c.Timespec(AttrOtime, ii.Otime)
	}
	return s.emit()
}

// sendFileattr sends the inode flags (protocol 2; the kernel sends them only
// when they changed on an existing inode).
func (s *sendCtx) sendFileattr(ino, gen, flags uint64) error {
	if s.opts.protocol() < 2 {
		return nil
	}
	c, err := s.beginForInode(CmdFileattr, ino, gen)
	if err != nil {
		return err
	}
	c.U64(AttrFileattr, flags)
	return s.emit()
}

// Linux fallocate(2) modes.
const (
	fallocKeepSize  = 0x1
	fallocPunchHole = 0x2
)

// sendFallocate sends FALLOCATE for the current inode (protocol 2).
func (s *sendCtx) sendFallocate(mode uint32, offset, length uint64) error {
	c, err := s.beginForInode(CmdFallocate, s.curIno, s.curGen)
	if err != nil {
		return err
	}
	c.U32(AttrFallocateMode, mode)
	c.U64(AttrFileOffset, offset)
	c.U64(AttrSize, length)
	return s.emit()
}

// sendUpdateExtent sends UPDATE_EXTENT, which stands for data in a stream
// without data. The kernel passes the length as a u32: so does this.
func (s *sendCtx) sendUpdateExtent(offset, length uint64) error {
	c, err := s.beginForInode(CmdUpdateExtent, s.curIno, s.curGen)
	if err != nil {
		return err
	}
	c.U64(AttrFileOffset, offset)
	c.U64(AttrSize, uint64(uint32(length)))
	return s.emit()
}

// Compression of ENCODED_WRITE (BTRFS_ENCODED_IO_COMPRESSION_*).
const (
	encodedZlib  = 1
	encodedZstd  = 2
	encodedLZO4K = 3 // then LZO_8K .. LZO_64K: one per sector size
)

// encodedCompression maps an extent's compression to ENCODED_WRITE's.
func (s *sendCtx) encodedCompression(alg uint8) (uint32, error) {
	switch alg {
	case btrfsread.CompressZlib:
		return encodedZlib, nil
	case btrfsread.CompressZstd:
		return encodedZstd, nil
	case btrfsread.CompressLZO:
		shift := bits.TrailingZeros64(s.sectorSize)
		if shift < 12 || shift > 16 {
			return 0, fmt.Errorf("LZO extents of a %d-byte sector size have no encoded form", s.sectorSize)
		}
		return encodedLZO4K + uint32(shift-12), nil
	}
	return 0, fmt.Errorf("compression type %d has no encoded form", alg)
}

// sendEncodedWrite sends the compressed extent fe at key offset extOff as
// stored, for the file range [offset, offset+length) it covers (the
// kernel's send_encoded_extent and send_encoded_inline_extent).
func (s *sendCtx) sendEncodedWrite(extOff uint64, fe *btrfsread.FileExtent, offset, length uint64) error {
	alg, err := s.encodedCompression(fe.Compression)
	if err != nil {
		return fmt.Errorf("inode %d at %d: %w", s.curIno, offset, err)
	}
	c, err := s.beginForInode(CmdEncodedWrite, s.curIno, s.curGen)
	if err != nil {
		return err
	}
	inline := fe.Type == btrfsread.ExtentInline
	covered, unencodedOffset, stored := fe.NumBytes, offset-extOff+fe.Offset, fe.DiskNumBytes
	if inline {
		covered, unencodedOffset, stored = fe.RamBytes, offset-extOff, uint64(len(fe.Inline))
	}
	c.U64(AttrFileOffset, offset)
	c.U64(AttrUnencodedFileLen, min(extOff+covered-offset, length))
	c.U64(AttrUnencodedLen, fe.RamBytes)
	c.U64(AttrUnencodedOffset, unencodedOffset)
	c.U32(AttrCompression, alg)
	if !inline {
		c.U32(AttrEncryption, 0)
	}
	c.Data = &DataRef{Subvol: s.send, Ino: s.curIno, FileOffset: offset, Extent: *fe, Len: uint32(stored), Encoded: true}
	return s.emit()
}

// sendCreateInode creates inode ino of the send tree under its orphan name.
func (s *sendCtx) sendCreateInode(ino uint64) error {
	gen, mode, rdev := s.curGen, s.curMode, s.curRdev
	if ino != s.curIno {
		ii, err := s.inodes.item(s.send, ino)
		if err != nil {
			return err
		}
		gen, mode, rdev = ii.Generation, uint64(ii.Mode), ii.Rdev
	}
	var cmd Cmd
	switch mode & sIFMT {
	case sIFREG:
		cmd = CmdMkfile
	case sIFDIR:
		cmd = CmdMkdir
	case sIFLNK:
		cmd = CmdSymlink
	case sIFCHR, sIFBLK:
		cmd = CmdMknod
	case sIFIFO:
		cmd = CmdMkfifo
	case sIFSOCK:
		cmd = CmdMksock
	default:
		return fmt.Errorf("inode %d has unknown file type %o", ino, mode&sIFMT)
	}
	var target []byte
	if cmd == CmdSymlink {
		var err error
		if target, err = s.send.Readlink(ino); err != nil {
			return fmt.Errorf("symlink inode %d: %w", ino, err)
		}
	}
	name, err := s.orphanName(ino, gen)
	if err != nil {
		return err
	}
	c := s.begin(cmd)
	c.Bytes(AttrPath, name)
	c.U64(AttrIno, ino)
	switch cmd {
	case CmdSymlink:
		c.Bytes(AttrPathLink, target)
	case CmdMknod, CmdMkfifo, CmdMksock:
		c.U64(AttrRdev, newEncodeDev(rdev))
		c.U64(AttrMode, mode)
	}
	return s.emit()
}

// newEncodeDev converts the kernel-internal dev_t stored on disk
// (major<<20 | minor) to the userspace encoding receive passes to mknod.
func newEncodeDev(rdev uint64) uint64 {
	major := rdev >> 20
	minor := rdev & 0xfffff
	return (minor & 0xff) | (major << 8) | ((minor &^ 0xff) << 12)
}

// Xattrs. security.capability is sent at the end of the inode, after CHOWN,
// which clears it at the receiver.

const (
	xattrCaps       = "security.capability"
	xattrACLAccess  = "system.posix_acl_access"
	xattrACLDefault = "system.posix_acl_default"
)

// emptyACL is an ACL with only its version header: what an empty ACL xattr
// is sent as, since the receiver cannot set a zero-length ACL.
var emptyACL = []byte{2, 0, 0, 0}

func (s *sendCtx) sendSetXattr(path, name, value []byte) error {
	c := s.begin(CmdSetXattr)
	c.Bytes(AttrPath, path)
	c.Bytes(AttrXattrName, name)
	c.Bytes(AttrXattrData, value)
	return s.emit()
}

func (s *sendCtx) processNewXattr(x btrfsread.DirItem) error {
	name := string(x.Name)
	if name == xattrCaps {
		return nil
	}
	value := x.Data
	if len(value) == 0 && (name == xattrACLAccess || name == xattrACLDefault) {
		value = emptyACL
	}
	p, err := s.curPath(s.curIno, s.curGen)
	if err != nil {
		return err
	}
	return s.sendSetXattr(p, x.Name, value)
}

func (s *sendCtx) processDeletedXattr(x btrfsread.DirItem) error {
	c, err := s.beginForInode(CmdRemoveXattr, s.curIno, s.curGen)
	if err != nil {
		return err
	}
	c.Bytes(AttrXattrName, x.Name)
	return s.emit()
}

// changedXattr handles one xattr item (several names may share its hash).
func (s *sendCtx) changedXattr(c btrfsread.Change) error {
	if s.curNewGen || s.curDeleted {
		return nil
	}
	var left, right []btrfsread.DirItem
	var err error
	if c.Left != nil {
		if left, err = btrfsread.ParseDirItems(c.Key, c.Left); err != nil {
			return err
		}
	}
	if c.Right != nil {
		if right, err = btrfsread.ParseDirItems(c.Key, c.Right); err != nil {
			return err
		}
	}
	for _, x := range left {
		old := findXattr(right, x.Name)
		if old == nil || !bytes.Equal(old.Data, x.Data) {
			if err := s.processNewXattr(x); err != nil {
				return err
			}
		}
	}
	for _, x := range right {
		if findXattr(left, x.Name) == nil {
			if err := s.processDeletedXattr(x); err != nil {
				return err
			}
		}
	}
	return nil
}

func findXattr(xs []btrfsread.DirItem, name []byte) *btrfsread.DirItem {
	for i := range xs {
		if bytes.Equal(xs[i].Name, name) {
			return &xs[i]
		}
	}
	return nil
}

// processAllNewXattrs sends every xattr of the current inode.
func (s *sendCtx) processAllNewXattrs() error {
	from := btrfsread.Key{ObjectID: s.curIno, Type: btrfsread.XattrItemKey}
	to := btrfsread.Key{ObjectID: s.curIno, Type: btrfsread.XattrItemKey, Offset: ^uint64(0)}
	return s.send.Tree().Walk(from, to, func(it btrfsread.Item) error {
		xs, err := btrfsread.ParseDirItems(it.Key, it.Data)
		if err != nil {
			return err
		}
		for _, x := range xs {
			if err := s.processNewXattr(x); err != nil {
				return err
			}
		}
		return nil
	})
}

// sendCapabilities re-sends security.capability after CHOWN. It runs for
// every inode sent, so it looks the one name up by its hash instead of
// reading all xattrs; a full send, which has seen every item of the inode
// by now, looks only when the inode has xattrs.
func (s *sendCtx) sendCapabilities() error {
	if s.parent == nil && !s.curXattrs {
		return nil
	}
	k := btrfsread.Key{ObjectID: s.curIno, Type: btrfsread.XattrItemKey, Offset: btrfsread.NameHash([]byte(xattrCaps))}
	it, err := s.send.Tree().Search(k)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	xs, err := btrfsread.ParseDirItems(it.Key, it.Data)
	if err != nil {
		return err
	}
	if x := findXattr(xs, []byte(xattrCaps)); x != nil {
		p, err := s.curPath(s.curIno, s.curGen)
		if err != nil {
			return err
		}
		return s.sendSetXattr(p, x.Name, x.Data)
	}
	return nil
}
