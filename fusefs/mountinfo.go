package fusefs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// isMountpoint reports whether dir is the mount point of a mount in this
// process's namespace, from /proc/self/mountinfo.
func isMountpoint(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	mounts, err := Mounts()
	if err != nil {
		return false, err
	}
	for _, m := range mounts {
		if m.Point == abs {
			return true, nil
		}
	}
	return false, nil
}

// MountEntry is one line of /proc/self/mountinfo: what is mounted where.
type MountEntry struct {
	Source string // the mount source (a device such as /dev/loop3, or "sendfs")
	Point  string // the mount point
}

// Mounts lists the mounts of this process's namespace, from
// /proc/self/mountinfo (mount point in field 5, source after the "-").
func Mounts() ([]MountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []MountEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts... - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 5 || sep+2 >= len(fields) {
			return nil, fmt.Errorf("/proc/self/mountinfo: malformed line %q", sc.Text())
		}
		out = append(out, MountEntry{Source: unescapeMountinfo(fields[sep+2]), Point: unescapeMountinfo(fields[4])})
	}
	return out, sc.Err()
}

// unescapeMountinfo decodes the octal escapes (\040 for space, \011, \012,
// \134) the kernel writes in mountinfo paths.
func unescapeMountinfo(s string) string {
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
