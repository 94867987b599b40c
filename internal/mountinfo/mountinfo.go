// Package mountinfo reads this process's mount table from
// /proc/self/mountinfo: the mount check of `sendfs mount` and the tests'
// cleanup and assertions share this one parser.
package mountinfo

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Entry is one mount: what is mounted where, and with which options.
type Entry struct {
	Source  string // the mount source (a device such as /dev/loop3, or "sendfs")
	Point   string // the mount point
	FSType  string // e.g. "btrfs", "fuse.sendfs"
	Options string // per-mount options, then the superblock options, comma-separated
}

// Read lists the mounts of this process's namespace.
func Read() ([]Entry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 6 || sep+3 >= len(fields) {
			return nil, fmt.Errorf("/proc/self/mountinfo: malformed line %q", sc.Text())
		}
		out = append(out, Entry{
			Source:  unescape(fields[sep+2]),
			Point:   unescape(fields[4]),
			FSType:  fields[sep+1],
			Options: fields[5] + "," + fields[sep+3],
		})
	}
	return out, sc.Err()
}

// Find returns the mount whose mount point is dir (made absolute, symlinks
// resolved), and whether there is one.
func Find(dir string) (Entry, bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Entry{}, false, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	mounts, err := Read()
	if err != nil {
		return Entry{}, false, err
	}
	for i := len(mounts) - 1; i >= 0; i-- { // the last mount on a point is the visible one
		if mounts[i].Point == abs {
			return mounts[i], true, nil
		}
	}
	return Entry{}, false, nil
}

// unescape decodes the octal escapes (\040 for space, \011, \012, \134) the
// kernel writes in mountinfo paths.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
