package test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"sendfs/internal/mountinfo"
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

// loopMounts maps a device to its mount points.
func loopMounts() map[string][]string {
	m := map[string][]string{}
	mounts, err := mountinfo.Read()
	if err != nil {
		return m
	}
	for _, mt := range mounts {
		m[mt.Source] = append(m[mt.Source], mt.Point)
	}
	return m
}
