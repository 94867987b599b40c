package btrfsread

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Device discovery: from one member, find the others of its filesystem by
// their superblocks, as 'btrfs device scan' does for the kernel.

// ScanOptions say where FindMembers looks.
type ScanOptions struct {
	// BlockDevices searches every block device of the system (those listed
	// in SysBlock with a non-zero size, opened as /dev/NAME).
	BlockDevices bool
	// SysBlock is the sysfs directory of block devices; "" means
	// /sys/class/block.
	SysBlock string
	// Log receives one line per member found. Nil discards it.
	Log *slog.Logger
}

// candidate is a device or image file whose superblock was read.
type candidate struct {
	path string
	sb   *superblock
}

// FindMembers returns the devices of the filesystem that paths belong to:
// the paths that are not directories, as given, then the members of the
// same filesystem found among the regular files of the paths that are
// directories, of the directories of the paths that are regular files and,
// with o.BlockDevices, among the block devices: one per devid not given
// (the one with the newest superblock), in devid order. When every path
// is a directory, their files must hold members of exactly one filesystem.
func (o ScanOptions) FindMembers(paths []string) ([]string, error) {
	var given, dirs []string
	for _, p := range paths {
		st, err := os.Stat(p)
		switch {
		case err == nil && st.IsDir():
			dirs = append(dirs, p)
		case err == nil && st.Mode().IsRegular():
			// The other images of an array usually lie beside it.
			given = append(given, p)
			dirs = append(dirs, filepath.Dir(p))
		default:
			given = append(given, p) // Open reports what is wrong with it
		}
	}
	var dirFiles []string
	for _, d := range dirs {
		files, err := regularFiles(d)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if !slices.Contains(dirFiles, f) {
				dirFiles = append(dirFiles, f)
			}
		}
	}
	have := map[uint64]bool{} // devids given
	var fsid *UUID
	for _, p := range given {
		if c, err := probe(p); err == nil {
			have[c.sb.dev.devid] = true
			if fsid == nil {
				fsid = &c.sb.fsid
			}
		}
	}
	cands := probeAll(dirFiles)
	if fsid == nil {
		// Only directories: they choose the filesystem.
		var ids []UUID
		for _, c := range cands {
			if !slices.Contains(ids, c.sb.fsid) {
				ids = append(ids, c.sb.fsid)
			}
		}
		switch {
		case len(ids) == 0 && len(given) == 0:
			return nil, sentinelf(ErrNotBtrfs, "found no btrfs member device in %s", strings.Join(paths, ", "))
		case len(ids) > 1:
			names := make([]string, len(ids))
			for i, id := range ids {
				names[i] = uuidString(id)
			}
			return nil, fmt.Errorf("found members of %d filesystems (fsid %s); give one member device to choose", len(ids), strings.Join(names, ", "))
		case len(ids) == 1:
			fsid = &ids[0]
		}
	}
	if fsid == nil {
		return given, nil // no member could be read: Open says why
	}
	if o.BlockDevices {
		devs, err := o.blockDevices()
		if err != nil {
			return nil, err
		}
		cands = append(cands, probeAll(devs)...)
	}
	best := map[uint64]candidate{}
	for _, c := range cands {
		id := c.sb.dev.devid
		if c.sb.fsid != *fsid || have[id] {
			continue
		}
		if b, ok := best[id]; !ok || c.sb.generation > b.sb.generation {
			best[id] = c
		}
	}
	ids := make([]uint64, 0, len(best))
	for id := range best {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := given
	for _, id := range ids {
		out = append(out, best[id].path)
		if o.Log != nil {
			o.Log.Info("found member device", "devid", id, "device", best[id].path, "fsid", uuidString(*fsid))
		}
	}
	return out, nil
}

// regularFiles lists the regular files directly in dir, sorted.
func regularFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// blockDevices lists /dev/NAME for every block device with a non-zero size.
func (o ScanOptions) blockDevices() ([]string, error) {
	sys := o.SysBlock
	if sys == "" {
		sys = "/sys/class/block"
	}
	ents, err := os.ReadDir(sys)
	if err != nil {
		return nil, fmt.Errorf("cannot list block devices: %w", err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sys, e.Name(), "size"))
		if err != nil {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil || n == 0 {
			continue
		}
		out = append(out, filepath.Join("/dev", e.Name()))
	}
	return out, nil
}

// probeAll reads the superblock of each path, keeping those with one.
func probeAll(paths []string) []candidate {
	var out []candidate
	for _, p := range paths {
		if c, err := probe(p); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// probe reads the superblock of the device or image file at p.
func probe(p string) (candidate, error) {
	f, dev, err := openDevice(p)
	if err != nil {
		return candidate{}, err
	}
	defer f.Close()
	sb, err := readSuperblock(dev)
	if err != nil {
		return candidate{}, err
	}
	if sb.dev.devid == 0 {
		return candidate{}, errors.New("devid 0")
	}
	return candidate{p, sb}, nil
}
