package btrfsread

import (
	"fmt"
	"io"
)

// File type bits of InodeItem.Mode.
const (
	sIFMT  = 0o170000
	sIFDIR = 0o040000
)

// ReadAt reads file ino's content (holes and prealloc as zeros, bounded by
// i_size) into p at off; it returns io.EOF like os.File.ReadAt at the end.
// Ranges without extent items (NO_HOLES) read as zeros.
func (sv *Subvolume) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("subvolume %d inode %d: negative offset %d", sv.ID, ino, off)
	}
	inode, err := sv.Inode(ino)
	if err != nil {
		return 0, err
	}
	if inode.Mode&sIFMT == sIFDIR {
		return 0, fmt.Errorf("subvolume %d inode %d is a directory", sv.ID, ino)
	}
	if uint64(off) >= inode.Size {
		return 0, io.EOF
	}
	n := int(min(uint64(len(p)), inode.Size-uint64(off)))
	start, end := uint64(off), uint64(off)+uint64(n)
	buf := p[:n]
	clear(buf)
	err = sv.Extents(ino, start, func(eoff uint64, e *FileExtent) error {
		if eoff >= end {
			return ErrStopWalk
		}
		from, to := max(eoff, start), min(eoff+e.Len(), end)
		if from >= to || e.IsHole() {
			return nil
		}
		return sv.fs.ReadExtent(DataContext{Subvol: sv.ID, Ino: ino, FileOffset: from}, e, buf[from-start:to-start], from-eoff)
	})
	if err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// DataContext names what a data read is for, so that an error can say which
// subvolume, inode and file offset is affected.
type DataContext struct {
	Subvol     uint64
	Ino        uint64
	FileOffset uint64
}

// ReadExtent fills p with the file bytes of extent e starting off bytes after
// the extent's key offset (so off 0 is the first file byte e covers):
// decompressing compressed and inline extents, zeros for holes and prealloc.
// Data is verified against the csum tree; a bad copy falls back to the next
// mirror; failures are *DataError naming ctx and the logical address.
// off+len(p) must not exceed e.Len(). Safe for concurrent use.
func (fs *FS) ReadExtent(ctx DataContext, e *FileExtent, p []byte, off uint64) error {
	n := uint64(len(p))
	if off+n < off || off+n > e.Len() {
		return fmt.Errorf("subvolume %d inode %d: read of %d bytes at %d beyond extent of %d bytes", ctx.Subvol, ctx.Ino, n, off, e.Len())
	}
	switch {
	case e.IsHole():
		clear(p)
		return nil
	case e.Type == ExtentInline:
		data := e.Inline
		if e.Compression != CompressNone {
			var err error
			data, err = decompressExtent(e.Compression, e.Inline, int(e.RamBytes), int(fs.Info().SectorSize))
			if err != nil {
				return &DataError{DataContext: ctx, Err: fmt.Errorf("inline extent: %w", err)}
			}
		}
		return copyExtent(ctx, 0, p, data, off)
	case e.Compression == CompressNone:
		return fs.readData(ctx, e.DiskBytenr+e.Offset+off, p, true)
	}
	data, err := fs.decompressed(ctx, e)
	if err != nil {
		return err
	}
	return copyExtent(ctx, e.DiskBytenr, p, data, e.Offset+off)
}

// ReadEncoded fills p with extent e as stored, without decompressing: the
// inline item's payload, or the DiskNumBytes bytes at DiskBytenr of a
// regular extent (verified against the csum tree, with mirror fallback).
// len(p) must be exactly that length. Safe for concurrent use.
func (fs *FS) ReadEncoded(ctx DataContext, e *FileExtent, p []byte) error {
	switch {
	case e.Type == ExtentInline:
		if len(p) != len(e.Inline) {
			return fmt.Errorf("subvolume %d inode %d: %d-byte buffer for an inline extent of %d bytes", ctx.Subvol, ctx.Ino, len(p), len(e.Inline))
		}
		copy(p, e.Inline)
		return nil
	case e.IsHole():
		return fmt.Errorf("subvolume %d inode %d: a hole has no stored data", ctx.Subvol, ctx.Ino)
	case uint64(len(p)) != e.DiskNumBytes:
		return fmt.Errorf("subvolume %d inode %d: %d-byte buffer for an extent of %d bytes on disk", ctx.Subvol, ctx.Ino, len(p), e.DiskNumBytes)
	}
	return fs.readData(ctx, e.DiskBytenr, p, false)
}

// copyExtent copies data[from:] into p, failing when data is too short.
func copyExtent(ctx DataContext, logical uint64, p, data []byte, from uint64) error {
	if from > uint64(len(data)) || uint64(len(data))-from < uint64(len(p)) {
		return &DataError{DataContext: ctx, Logical: logical, Err: &CorruptError{Reason: "extent data shorter than its item says", Value: len(data)}}
	}
	copy(p, data[from:])
	return nil
}

// decompressed returns the whole decompressed content of compressed extent
// e, read and verified once and kept in the view's extent cache.
func (fs *FS) decompressed(ctx DataContext, e *FileExtent) ([]byte, error) {
	if e.DiskNumBytes == 0 || e.DiskNumBytes > maxCompressedRam {
		return nil, &DataError{DataContext: ctx, Logical: e.DiskBytenr, Err: &CorruptError{Reason: "compressed extent disk size out of range", Value: e.DiskNumBytes}}
	}
	k := extentKey{bytenr: e.DiskBytenr, diskLen: e.DiskNumBytes, ram: e.RamBytes, alg: e.Compression}
	return fs.extents.Get(k, func() ([]byte, error) {
		raw := make([]byte, e.DiskNumBytes)
		if err := fs.readData(ctx, e.DiskBytenr, raw, false); err != nil {
			return nil, err
		}
		data, err := decompressExtent(e.Compression, raw, int(e.RamBytes), int(fs.Info().SectorSize))
		if err != nil {
			return nil, &DataError{DataContext: ctx, Logical: e.DiskBytenr, Err: err}
		}
		return data, nil
	})
}
