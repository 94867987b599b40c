package btrfsread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

// Superblock layout (docs/FORMAT.md §2.1; the fields are rawSuperblock's).
const (
	superSize        = 4096
	superCsumEnd     = 32 // the checksum covers [superCsumEnd, superSize)
	superMagic       = "_BHRfS_M"
	sysChunkArrayMax = 2048
	maxTreeLevel     = 8 // BTRFS_MAX_LEVEL: levels are 0..7
)

// superOffsets are the physical offsets of the superblock copies.
var superOffsets = []int64{64 << 10, 64 << 20, 256 << 30}

// Incompat feature bits.
const (
	incompatMixedBackref   = 1 << 0
	incompatDefaultSubvol  = 1 << 1
	incompatMixedGroups    = 1 << 2
	incompatCompressLZO    = 1 << 3
	incompatCompressZstd   = 1 << 4
	incompatBigMetadata    = 1 << 5
	incompatExtendedIref   = 1 << 6
	incompatRAID56         = 1 << 7
	incompatSkinnyMetadata = 1 << 8
	incompatNoHoles        = 1 << 9
	incompatMetadataUUID   = 1 << 10
	incompatRAID1C34       = 1 << 11
	incompatZoned          = 1 << 12
	incompatExtentTreeV2   = 1 << 13
	incompatRaidStripeTree = 1 << 14
	incompatSimpleQuota    = 1 << 16
	incompatRemapTree      = 1 << 17

	incompatSupported = incompatMixedBackref | incompatDefaultSubvol |
		incompatMixedGroups | incompatCompressLZO | incompatCompressZstd |
		incompatBigMetadata | incompatExtendedIref | incompatRAID56 |
		incompatSkinnyMetadata | incompatNoHoles | incompatMetadataUUID |
		incompatRAID1C34 | incompatSimpleQuota
)

// incompatNames names the incompat bits as btrfs-progs does.
var incompatNames = map[uint64]string{
	incompatMixedBackref:   "mixed-backref",
	incompatDefaultSubvol:  "default-subvol",
	incompatMixedGroups:    "mixed-groups",
	incompatCompressLZO:    "compress-lzo",
	incompatCompressZstd:   "compress-zstd",
	incompatBigMetadata:    "big-metadata",
	incompatExtendedIref:   "extended-iref",
	incompatRAID56:         "raid56",
	incompatSkinnyMetadata: "skinny-metadata",
	incompatNoHoles:        "no-holes",
	incompatMetadataUUID:   "metadata-uuid",
	incompatRAID1C34:       "raid1c34",
	incompatZoned:          "zoned",
	incompatExtentTreeV2:   "extent-tree-v2",
	incompatRaidStripeTree: "raid-stripe-tree",
	incompatSimpleQuota:    "simple-quota",
	incompatRemapTree:      "remap-tree",
}

// superFlagsRefused are superblock flags that mean the image is not a plain
// readable filesystem: a seed device, a btrfs-image dump without data, or an
// interrupted btrfstune conversion.
var superFlagsRefused = []struct {
	bit  uint64
	name string
}{
	{1 << 32, "seeding"},
	{1 << 33, "metadump"},
	{1 << 34, "metadump-v2"},
	{1 << 35, "changing-fsid"},
	{1 << 36, "changing-fsid-v2"},
	{1 << 38, "changing-block-group-tree"},
	{1 << 39, "changing-data-csum"},
	{1 << 40, "changing-metadata-csum"},
}

// devItem is the part of a btrfs_dev_item the reader needs.
type devItem struct {
	devid      uint64
	totalBytes uint64
	uuid       UUID
	fsid       UUID
}

func decodeDevItem(r *rawDevItem) devItem {
	return devItem{devid: r.DevID, totalBytes: r.TotalBytes, uuid: r.UUID, fsid: r.FSID}
}

// superblock is a decoded, checksum-verified superblock copy.
type superblock struct {
	fsid                UUID
	metadataUUID        UUID // equals fsid unless METADATA_UUID is set
	bytenr              uint64
	flags               uint64
	generation          uint64
	root                uint64
	chunkRoot           uint64
	totalBytes          uint64
	bytesUsed           uint64
	numDevices          uint64
	sectorSize          uint32
	nodeSize            uint32
	chunkRootGeneration uint64
	compatRO            uint64
	incompat            uint64
	csumType            uint16
	rootLevel           uint8
	chunkRootLevel      uint8
	dev                 devItem
	label               string
	sysChunkArray       []byte
	csum                csumAlgo
}

// errNoMagic marks a superblock copy without the btrfs magic.
var errNoMagic = errors.New("no btrfs magic")

// parseSuperblock decodes and verifies one superblock copy read at physical
// offset at. It checks the magic, the checksum, the bytenr and the sanity of
// the sizes; it does not judge feature flags.
func parseSuperblock(b []byte, at uint64) (*superblock, error) {
	if len(b) != superSize {
		return nil, fmt.Errorf("superblock is %d bytes, want %d", len(b), superSize)
	}
	var raw rawSuperblock
	if _, err := binary.Decode(b, binary.LittleEndian, &raw); err != nil {
		return nil, err
	}
	if string(raw.Magic[:]) != superMagic {
		return nil, errNoMagic
	}
	sb := &superblock{csumType: raw.CsumType}
	algo, err := csumAlgoFor(sb.csumType)
	if err != nil {
		return nil, err
	}
	sb.csum = algo
	var sum [32]byte
	if !bytes.Equal(algo.sum(&sum, b[superCsumEnd:]), b[:algo.size]) {
		return nil, &CorruptError{Reason: fmt.Sprintf("superblock at physical 0x%x: %s checksum mismatch", at, algo.name)}
	}
	sb.fsid = raw.FSID
	sb.bytenr = raw.Bytenr
	sb.flags = raw.Flags
	sb.generation = raw.Generation
	sb.root = raw.Root
	sb.chunkRoot = raw.ChunkRoot
	sb.totalBytes = raw.TotalBytes
	sb.bytesUsed = raw.BytesUsed
	sb.numDevices = raw.NumDevices
	sb.sectorSize = raw.SectorSize
	sb.nodeSize = raw.NodeSize
	sb.chunkRootGeneration = raw.ChunkRootGeneration
	sb.compatRO = raw.CompatROFlags
	sb.incompat = raw.IncompatFlags
	sb.rootLevel = raw.RootLevel
	sb.chunkRootLevel = raw.ChunkRootLevel
	sb.dev = decodeDevItem(&raw.DevItem)
	label := raw.Label[:]
	if i := bytes.IndexByte(label, 0); i >= 0 {
		label = label[:i]
	}
	sb.label = string(label)
	sb.metadataUUID = sb.fsid
	if sb.incompat&incompatMetadataUUID != 0 {
		sb.metadataUUID = raw.MetadataUUID
	}
	if raw.SysChunkArraySize > sysChunkArrayMax {
		return nil, sb.corrupt(at, "sys_chunk_array_size %d exceeds %d", raw.SysChunkArraySize, sysChunkArrayMax)
	}
	sb.sysChunkArray = append([]byte(nil), raw.SysChunkArray[:raw.SysChunkArraySize]...)
	if sb.bytenr != at {
		return nil, sb.corrupt(at, "bytenr 0x%x does not match its location", sb.bytenr)
	}
	return sb, sb.checkSanity(at)
}

func (sb *superblock) corrupt(at uint64, format string, args ...any) error {
	return &CorruptError{Reason: fmt.Sprintf("superblock at physical 0x%x: ", at) + fmt.Sprintf(format, args...)}
}

// checkSanity applies the size checks of btrfs-progs' btrfs_check_super.
func (sb *superblock) checkSanity(at uint64) error {
	isPow2 := func(v uint32) bool { return bits.OnesCount32(v) == 1 }
	switch {
	case !isPow2(sb.sectorSize) || sb.sectorSize < 4096 || sb.sectorSize > 65536:
		return sb.corrupt(at, "invalid sectorsize %d", sb.sectorSize)
	case !isPow2(sb.nodeSize) || sb.nodeSize < sb.sectorSize || sb.nodeSize > 65536:
		return sb.corrupt(at, "invalid nodesize %d", sb.nodeSize)
	case sb.rootLevel >= maxTreeLevel:
		return sb.corrupt(at, "invalid root level %d", sb.rootLevel)
	case sb.chunkRootLevel >= maxTreeLevel:
		return sb.corrupt(at, "invalid chunk root level %d", sb.chunkRootLevel)
	case sb.root%uint64(sb.sectorSize) != 0 || sb.chunkRoot%uint64(sb.sectorSize) != 0:
		return sb.corrupt(at, "root 0x%x or chunk root 0x%x not sector aligned", sb.root, sb.chunkRoot)
	case sb.numDevices == 0:
		return sb.corrupt(at, "num_devices is 0")
	case sb.dev.fsid != sb.metadataUUID:
		return sb.corrupt(at, "dev_item fsid does not match the filesystem")
	}
	return nil
}

// checkFeatures refuses what a read-only reader cannot handle, naming it.
func (sb *superblock) checkFeatures() error {
	if bad := sb.incompat &^ incompatSupported; bad != 0 {
		bit := bad & -bad
		name, ok := incompatNames[bit]
		if !ok {
			name = fmt.Sprintf("unknown bit %d (0x%x)", bits.TrailingZeros64(bit), bit)
		}
		return sentinelf(ErrUnsupported, "filesystem uses incompat feature %s, which sendfs cannot read", name)
	}
	var refused []string
	for _, f := range superFlagsRefused {
		if sb.flags&f.bit != 0 {
			refused = append(refused, f.name)
		}
	}
	if len(refused) > 0 {
		return sentinelf(ErrUnsupported, "filesystem has superblock flag %s set, which sendfs cannot read", strings.Join(refused, ", "))
	}
	return nil
}

// readSuperblock reads every superblock copy inside dev and returns the
// valid one with the highest generation. As in btrfs-progs, copies of
// another filesystem than the first valid one (leftovers of an earlier mkfs)
// are ignored.
func readSuperblock(dev Device) (*superblock, error) {
	var best *superblock
	var firstErr error
	buf := make([]byte, superSize)
	for _, off := range superOffsets {
		if off+superSize > dev.Size {
			break
		}
		sb, err := readSuperblockAt(dev, buf, off)
		if err != nil {
			if firstErr == nil || errors.Is(firstErr, errNoMagic) {
				firstErr = err
			}
			continue
		}
		if best == nil || sb.fsid == best.fsid && sb.generation > best.generation {
			best = sb
		}
	}
	if best != nil {
		return best, nil
	}
	if errors.Is(firstErr, ErrUnsupported) || errors.Is(firstErr, errSuperblockRead) {
		return nil, fmt.Errorf("%s: %w", dev.Name, firstErr)
	}
	msg := fmt.Sprintf("%s is not a btrfs filesystem (no valid superblock", dev.Name)
	if firstErr != nil && !errors.Is(firstErr, errNoMagic) {
		msg += ": " + firstErr.Error()
	}
	return nil, sentinelf(ErrNotBtrfs, "%s)", msg)
}

// errSuperblockRead marks a superblock copy that could not be read (an I/O
// error): the other copies may still be good.
var errSuperblockRead = errors.New("cannot read superblock")

// readSuperblockAt reads and parses the superblock copy at off into buf.
func readSuperblockAt(dev Device, buf []byte, off int64) (*superblock, error) {
	if _, err := readFresh(dev, buf, off); err != nil {
		return nil, fmt.Errorf("%w at %d: %w", errSuperblockRead, off, err)
	}
	return parseSuperblock(buf, uint64(off))
}
