package sendgen

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"sendfs/internal/testenv"
)

// requireTool returns the path of an external program; without it the
// test fails in CI and is skipped elsewhere.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		testenv.Unavailable(t, name+" not installed (apt package btrfs-progs): "+err.Error())
	}
	return path
}

// receiveDump parses stream with the real parser, btrfs receive --dump,
// and returns its output and error messages.
func receiveDump(t *testing.T, stream []byte) (out, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(requireTool(t, "btrfs"), "receive", "--dump")
	cmd.Stdin = bytes.NewReader(stream)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestReceiveDumpParses proves the framing (header, lengths, TLVs, crc)
// against btrfs-progs: the stream parses command for command, and a flipped
// data byte is caught by the crc.
func TestReceiveDumpParses(t *testing.T) {
	stream := writeAll(t, synthStream(t, 1, sampleCommands(49152)))
	out, stderr, err := receiveDump(t, stream)
	if err != nil {
		t.Fatalf("btrfs receive --dump: %v: %s\n%s", err, stderr, out)
	}
	var lines []string
	for l := range strings.Lines(out) {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	if len(lines) != len(sampleCommands(49152))-1 { // END prints nothing
		t.Errorf("dump has %d lines, want one per command but END:\n%s", len(lines), out)
	}
	for _, want := range []string{
		"subvol ./snap uuid=6b1d0e3a-528f-4c11-9a20-7e5501020304 transid=8",
		"rename ./snap/o261-5-0 dest=./snap/big",
		"write ./snap/dir/one offset=0 len=1",
		"write ./snap/big offset=147456 len=1234",
		"write ./snap/big offset=246995 len=4095",
		"chown ./snap/big gid=100 uid=1000",
		"chmod ./snap/dir mode=755",
		"set_xattr ./snap/big name=user.k data=value len=5",
		"truncate ./snap/big size=1048576",
	} {
		found := false
		for _, l := range lines {
			// progs 6.2 prints "data=value", newer ones just the value.
			found = found || l == want || l == strings.Replace(want, "data=", "", 1)
		}
		if !found {
			t.Errorf("dump lacks %q:\n%s", want, out)
		}
	}

	// Protocol 2 frames DATA without a length; the parser must agree.
	v2, stderr, err := receiveDump(t, writeAll(t, synthStream(t, 2, sampleCommands(131072))))
	if err != nil || !strings.Contains(v2, "offset=0 len=131072") {
		t.Errorf("protocol 2 stream: %v: %s\n%s", err, stderr, v2)
	}

	bad := bytes.Clone(stream)
	bad[len(bad)/2] ^= 1
	if _, stderr, err := receiveDump(t, bad); err == nil || !strings.Contains(strings.ToLower(stderr), "crc") {
		t.Errorf("a corrupted stream was not rejected for its crc: %v: %s", err, stderr)
	}
}
