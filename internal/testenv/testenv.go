// Package testenv holds the one rule every sendfs test follows when what it
// needs is missing (root, loop devices, btrfs-progs, /dev/fuse): fail under
// CI=true, where a skipped test would pass unnoticed, and skip with a
// message elsewhere.
package testenv

import (
	"os"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable stops t because why (a short reason, e.g. "no /dev/fuse") keeps
// it from running here: a failure under CI=true, a skip elsewhere.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("cannot run under CI=true: %s", why)
	}
	t.Skipf("skipping: %s (under CI=true this fails)", why)
}
