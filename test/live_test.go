package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLiveImage sends snapshots of a filesystem that stays mounted and busy:
// another subvolume is written and committed all the time, so the trees
// sendfs starts from (root tree, extent tree, chunk tree copies) are
// rewritten and their old blocks reused while it reads. Read-only snapshots
// do not change, so every stream must still round-trip.
func TestLiveImage(t *testing.T) {
	requireRoot(t)
	fs := newFS(t, fsOpts{Size: 4 << 30})
	sv := subvolCreate(t, fs, "sv")
	baseTree(t, sv)
	nfiles(t, sv, "many-", 3000)
	s1 := snapshotRO(t, fs, "sv", "snaps/s1")
	writeAt(t, j(sv, "big"), 100000, random(50000, 7))
	mustRename(t, j(sv, "a"), j(sv, "e", "a"))
	s2 := snapshotRO(t, fs, "sv", "snaps/s2")
	syncFS(t, fs)
	full, inc := kernelSend(t, fs.Mnt, s1, ""), kernelSend(t, fs.Mnt, s2, s1)

	busy := subvolCreate(t, fs, "busy")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var churnErr error
	commits := 0
	stopWriter := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	t.Cleanup(stopWriter) // before the unmount, also when a send fails
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := filepath.Join(busy, fmt.Sprintf("f%d", i%200))
			if err := os.WriteFile(p, random(64<<10, uint64(i)), 0o644); err != nil {
				churnErr = err
				return
			}
			if i%5 == 0 {
				if _, err := runErr("btrfs", "filesystem", "sync", fs.Mnt); err != nil {
					churnErr = err
					return
				}
				commits++
			}
		}
	}()
	var oursFull, oursInc [][]byte
	deadline := time.Now().Add(20 * time.Second)
	for round := 0; round < 10 && time.Now().Before(deadline); round++ {
		oursFull = append(oursFull, sendfsSend(t, fs.Images, "snaps/s1", ""))
		oursInc = append(oursInc, sendfsSend(t, fs.Images, "snaps/s2", "snaps/s1"))
	}
	stopWriter()
	if churnErr != nil {
		t.Fatalf("writer: %v", churnErr)
	}
	t.Logf("%d sends of each stream while the writer made %d commits", len(oursFull), commits)
	if commits < 2 {
		t.Errorf("the writer committed only %d times: the image was not busy", commits)
	}
	for i := range oursFull {
		if string(oursFull[i]) != string(oursFull[0]) || string(oursInc[i]) != string(oursInc[0]) {
			t.Errorf("send %d of a read-only snapshot gave other bytes than send 0", i)
		}
	}
	r := newReceiver(t)
	compareTrees(t, s1, r.receive(t, oursFull[0]))
	compareTrees(t, s2, r.receive(t, full, oursInc[0]))
	if d := diffDumps(dump(t, inc), dump(t, oursInc[0])); d != nil {
		t.Logf("incremental dump differs from the kernel's:\n%s", strings.Join(d, "\n"))
	}
}
