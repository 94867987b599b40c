package test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ownerFile marks a directory of test images with the pid of the test
// binary that made them. When go test's timeout kills a binary, its
// t.Cleanup functions never run; the next test binary finds the marks of
// dead owners and releases what they left: mounts and loop devices, never
// anything another live process owns.
const ownerFile = "sendfs-test.pid"

func markOwner(dir string) error {
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

// reapStale unmounts and detaches the loop devices whose image lies in a
// directory marked by a test binary that is no longer running.
func reapStale() {
	if os.Geteuid() != 0 {
		return
	}
	out, err := runErr("losetup", "--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE")
	if err != nil {
		return
	}
	mounts := loopMounts()
	stale := map[string]bool{} // image directories of dead owners
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		dev, back, ok := strings.Cut(sc.Text(), " ")
		dir := filepath.Dir(strings.TrimSuffix(back, " (deleted)"))
		if !ok || !deadOwner(dir) {
			continue
		}
		stale[dir] = true
		for _, mnt := range mounts[dev] {
			runErr("umount", "-l", mnt)
		}
		runErr("btrfs", "device", "scan", "--forget", dev)
		if _, err := runErr("losetup", "-d", dev); err == nil {
			fmt.Fprintf(os.Stderr, "released %s (%s) left by a killed test binary\n", dev, back)
		}
	}
	for dir := range stale {
		os.RemoveAll(dir)
		os.Remove(filepath.Dir(dir)) // go test's per-test temp root, if now empty
	}
}

func deadOwner(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// loopMounts maps a device to its mount points, from /proc/self/mountinfo.
func loopMounts() map[string][]string {
	m := map[string][]string{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts... - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+2 >= len(fields) {
			continue
		}
		src := fields[sep+2]
		m[src] = append(m[src], unescapeMountinfo(fields[4]))
	}
	return m
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
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
