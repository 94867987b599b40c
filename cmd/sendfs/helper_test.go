package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestHelperArgs: every `sendfs mount` flag is an -o option ('_' for '-'),
// generic mount options are ignored, anything else is refused by name.
func TestHelperArgs(t *testing.T) {
	flags := pflag.NewFlagSet("mount", pflag.ContinueOnError)
	var opts MountOptions
	opts.AddFlags(flags)
	flags.VisitAll(func(f *pflag.Flag) {
		opt, want := strings.ReplaceAll(f.Name, "-", "_"), "--"+f.Name+"=true"
		if f.Value.Type() != "bool" {
			v := map[string]string{"int": "2", "duration": "5s"}[f.Value.Type()]
			if v == "" {
				v = "x"
			}
			opt, want = opt+"="+v, "--"+f.Name+"="+v
		}
		got, fake, err := helperArgs([]string{"/dev/sdb1", "/mnt", "-o", "ro,nofail,x-systemd.automount," + opt})
		if err != nil || fake || !slices.Equal(got, []string{want, "/dev/sdb1", "/mnt"}) {
			t.Errorf("-o %s: %q, %v, %v", opt, got, fake, err)
		}
	})
	got, _, err := helperArgs([]string{"/nonexistent/a.img:/nonexistent/b.img", "/mnt", "-oallow_other", "-n"})
	if err != nil || !slices.Equal(got, []string{"--allow-other=true", "/nonexistent/a.img", "/nonexistent/b.img", "/mnt"}) {
		t.Errorf("two devices: %q, %v", got, err)
	}
	for _, bad := range []struct{ args, want string }{
		{"/d /mnt -o ro,bogus", `unknown mount option "bogus"`},
		{"/d /mnt -o cache_dir", "needs a value"},
		{"/d /mnt -o allow_other=maybe", "allow_other=maybe"},
		{"/d /mnt /x", "got 3 arguments"},
		{"/d /mnt -x", "unknown mount helper flag -x"},
	} {
		if _, _, err := helperArgs(strings.Fields(bad.args)); err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want a usage error saying %q", bad.args, err, bad.want)
		}
	}
	for args, want := range map[string]bool{"/dev/sdb1 /mnt": true, "a.img /mnt -o ro": true, "list x.img": false, "lst x": false, "--help": false} {
		if got := isHelperCall(strings.Fields(args)); got != want {
			t.Errorf("isHelperCall(%s) = %v", args, got)
		}
	}
}
