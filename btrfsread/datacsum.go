package btrfsread

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// dataCsums returns the stored checksum of each sector of the sector-aligned
// range [start, start+length), from the csum tree; an entry is nil where
// there is none (NODATASUM files, prealloc), and such sectors are not
// verified.
func (fs *FS) dataCsums(start, length uint64) ([][]byte, error) {
	ss, cs := uint64(fs.Info().SectorSize), fs.csumSize()
	sums := make([][]byte, length/ss)
	t, err := fs.Tree(CsumTreeID)
	if errors.Is(err, ErrNotFound) {
		return sums, nil
	}
	if err != nil {
		return nil, err
	}
	end := start + length
	// add copies the csums of one item that fall into the range; it
	// returns where the item's csums end.
	add := func(it Item) (uint64, error) {
		first := it.Key.Offset
		if first%ss != 0 || len(it.Data)%cs != 0 {
			return 0, &CorruptError{Logical: it.Leaf, Reason: "misaligned csum item", Value: it.Key}
		}
		n := uint64(len(it.Data) / cs)
		lo, hi := max(first, start), min(first+n*ss, end)
		for l := lo; l < hi; l += ss {
			i := (l - first) / ss
			sums[(l-start)/ss] = it.Data[i*uint64(cs) : (i+1)*uint64(cs)]
		}
		return first + n*ss, nil
	}
	// The item covering start begins at or before it; when it covers the
	// whole range (items do not overlap), no other item has any of it.
	// The walk for the rest starts where that item's csums end.
	from := start
	prev, err := t.SearchBefore(Key{ExtentCsumObjectID, ExtentCsumKey, start})
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, err
	case prev.Key.ObjectID == ExtentCsumObjectID && prev.Key.Type == ExtentCsumKey:
		covered, err := add(prev)
		if err != nil {
			return nil, err
		}
		if covered >= end {
			return sums, nil
		}
		from = max(from, covered)
	}
	err = t.Walk(Key{ExtentCsumObjectID, ExtentCsumKey, from}, Key{ExtentCsumObjectID, ExtentCsumKey, end - 1}, func(it Item) error {
		_, err := add(it)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("data checksums of 0x%x: %w", start, err)
	}
	return sums, nil
}

// ErrDataChecksum reports file data whose checksum does not match the csum
// tree (inside a *DataError, which says where).
var ErrDataChecksum = errors.New("data checksum mismatch")

var errNotRead = errors.New("no copy read")

// DataError reports file data that could not be read: every copy failed
// its checksum or could not be read, or it did not decompress.
type DataError struct {
	DataContext
	Logical uint64 // logical address of the bad block
	Err     error
}

func (e *DataError) Error() string {
	return fmt.Sprintf("subvolume %d inode %d file offset %d (logical 0x%x): %v", e.Subvol, e.Ino, e.FileOffset, e.Logical, e.Err)
}

func (e *DataError) Unwrap() error { return e.Err }

// readData reads len(p) bytes of file data at logical, verifying whole
// sectors against the csum tree. A sector that fails on one copy is re-read
// from the next. When linear is set, p maps to file bytes from
// ctx.FileOffset on (uncompressed data), which lets an error name the exact
// file offset; otherwise it names ctx.FileOffset. When a sector is bad in
// every copy and the view is the newest, it is read once more after
// dropping the devices' cached windows (live block devices, see bdev.go); an
// older view's failure is rather a moved block (live.go).
func (fs *FS) readData(ctx DataContext, logical uint64, p []byte, linear bool) error {
	err := fs.readDataCopies(ctx, logical, p, linear)
	if errors.Is(err, ErrDataChecksum) && fs.newest() && fs.dropCaches() {
		err = fs.readDataCopies(ctx, logical, p, linear)
	}
	return err
}

func (fs *FS) readDataCopies(ctx DataContext, logical uint64, p []byte, linear bool) error {
	if len(p) == 0 {
		return nil
	}
	ss := uint64(fs.Info().SectorSize)
	start := logical &^ (ss - 1)
	end := (logical + uint64(len(p)) + ss - 1) &^ (ss - 1)
	buf := p
	if start != logical || end != logical+uint64(len(p)) {
		sp := getScratch(int(end - start))
		defer putScratch(sp)
		buf = *sp
	}
	fail := func(l uint64, err error) error {
		c := ctx
		if linear && l > logical {
			c.FileOffset += l - logical
		}
		return &DataError{DataContext: c, Logical: l, Err: err}
	}
	sums, err := fs.dataCsums(start, end-start)
	if err != nil {
		return fail(start, err)
	}
	copies, err := fs.copies(start)
	if err != nil {
		return fail(start, err)
	}
	// Data without a checksum cannot show that it is stale: it is read
	// past any cache, and only trusted while the view is the newest commit.
	unsummed := slices.ContainsFunc(sums, func(s []byte) bool { return s == nil })
	bad := make([]error, len(sums)) // per sector: why no good copy is in buf yet
	for i := range bad {
		bad[i] = errNotRead
	}
	for m, nbad := 0, len(bad); m < copies && nbad > 0; m++ {
		// Each run of bad sectors is read from copy m straight into buf:
		// only bad sectors are overwritten, good ones stay.
		for lo := 0; lo < len(bad); {
			if bad[lo] == nil {
				lo++
				continue
			}
			hi := lo + 1
			for hi < len(bad) && bad[hi] != nil {
				hi++
			}
			fixed, err := fs.readDataRun(buf[uint64(lo)*ss:uint64(hi)*ss], start+uint64(lo)*ss, m, unsummed, sums[lo:hi], bad[lo:hi])
			if err != nil {
				return fail(start+uint64(lo)*ss, err)
			}
			nbad -= fixed
			lo = hi
		}
	}
	for i, err := range bad {
		if err != nil {
			return fail(start+uint64(i)*ss, fmt.Errorf("no good copy among %d: %w", copies, err))
		}
	}
	if unsummed {
		if err := fs.checkCurrent(); err != nil {
			return fail(start, err)
		}
	}
	if &buf[0] != &p[0] {
		copy(p, buf[logical-start:])
	}
	return nil
}

// scratch holds the buffers of reads that do not start and end on sector
// boundaries (the end of most files), whose sectors are read whole, up to
// maxScratch bytes each.
var scratch = sync.Pool{New: func() any { return new([]byte) }}

const maxScratch = 1 << 20

// getScratch returns a scratch buffer of n bytes, for putScratch.
func getScratch(n int) *[]byte {
	sp := scratch.Get().(*[]byte)
	if cap(*sp) < n {
		*sp = make([]byte, n)
	}
	*sp = (*sp)[:n]
	return sp
}

func putScratch(sp *[]byte) {
	if cap(*sp) <= maxScratch {
		scratch.Put(sp)
	}
}

// readDataRun reads dst, sectors all bad so far, from copy mirror at
// logical (fresh: past any cache of ours) and checks each sector against
// sums. It updates bad (nil for a
// sector now good, else why not) and returns how many sectors became good.
// A piece that cannot be read (a missing member, an I/O error) fails only
// its sectors: another copy may have them.
func (fs *FS) readDataRun(dst []byte, logical uint64, mirror int, fresh bool, sums [][]byte, bad []error) (int, error) {
	ss := uint64(fs.Info().SectorSize)
	readErrs := make([]error, len(bad))
	err := fs.readPieces(dst, logical, mirror, fresh, func(off, n uint64, err error) error {
		for i := off / ss; i < (off+n)/ss; i++ {
			readErrs[i] = err
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	fixed := 0
	var sum [32]byte
	for i := range bad {
		switch {
		case readErrs[i] != nil:
			bad[i] = readErrs[i]
		case sums[i] != nil && !bytes.Equal(fs.checksum(&sum, dst[uint64(i)*ss:uint64(i+1)*ss]), sums[i]):
			bad[i] = fmt.Errorf("copy %d: %w", mirror+1, ErrDataChecksum)
		default:
			bad[i] = nil
			fixed++
		}
	}
	return fixed, nil
}
