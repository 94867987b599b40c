package main

import (
	"errors"
	"fmt"
	"testing"
)

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{errors.New("boom"), exitFailure},
		{usageErrorf("no DEVICE given"), exitUsage},
		{fmt.Errorf("wrapped: %w", usageErrorf("x")), exitUsage},
		{&exitError{err: errors.New("x"), code: 7}, 7},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestErrorLineIsOneLine(t *testing.T) {
	err := errors.Join(errors.New("first"), errors.New("second\tpart"))
	if got, want := errorLine(err), "sendfs: first second part"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestOpenFSNeedsDevice(t *testing.T) {
	if _, err := openFS(nil, DeviceOptions{}, nil); exitCode(err) != exitUsage {
		t.Errorf("openFS(nil) = %v, want a usage error", err)
	}
}
