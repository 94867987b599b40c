package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestMountRefreshFlag: --refresh takes a duration, 2s by default; a
// negative one is a usage error that names the flag.
func TestMountRefreshFlag(t *testing.T) {
	var o MountOptions
	f := pflag.NewFlagSet("mount", pflag.ContinueOnError)
	o.AddFlags(f)
	if o.Refresh != 2*time.Second {
		t.Errorf("default --refresh %v, want 2s", o.Refresh)
	}
	if err := f.Parse([]string{"--refresh", "0"}); err != nil || o.Refresh != 0 {
		t.Errorf("--refresh 0: %v, %v", o.Refresh, err)
	}
	con := &console{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}
	err := runMount(context.Background(), MountOptions{Refresh: -time.Second}, con, []string{"dev.img", t.TempDir()})
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "--refresh") {
		t.Errorf("--refresh -1s: %v (exit %d), want a usage error naming --refresh", err, exitCode(err))
	}
}
