package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"sendfs/btrfsread"
	"sendfs/sendgen"
)

// TestSendRefusesTerminal: with stdout on a terminal and no -f, send stops
// before touching the devices (which do not exist here); -f or --size lift
// the refusal.
func TestSendRefusesTerminal(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.img")
	tty := &console{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}, OutIsTerminal: true}
	err := runSend(context.Background(), SendOptions{}, tty, []string{missing, "snap"})
	if !errors.Is(err, errTerminal) {
		t.Fatalf("err = %v, want the terminal refusal", err)
	}
	if want := "refusing to write a binary stream to a terminal; use -f FILE or redirect"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	for _, opts := range []SendOptions{{File: filepath.Join(t.TempDir(), "out")}, {Size: true}} {
		err := runSend(context.Background(), opts, tty, []string{missing, "snap"})
		if errors.Is(err, errTerminal) || err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("%+v: err = %v, want an error opening %s", opts, err, missing)
		}
	}
}

func TestSendUsage(t *testing.T) {
	con := &console{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}
	for _, args := range [][]string{nil, {"only.img"}} {
		if err := runSend(context.Background(), SendOptions{}, con, args); exitCode(err) != exitUsage {
			t.Errorf("args %q: err = %v (exit %d), want a usage error", args, err, exitCode(err))
		}
	}
}

// failAfter writes n bytes and then fails, like a send that hits a bad block.
func failAfter(n int) func(io.Writer) (int64, error) {
	return func(w io.Writer) (int64, error) {
		k, err := w.Write(bytes.Repeat([]byte{'x'}, n))
		if err != nil {
			return int64(k), err
		}
		return int64(k), errors.New("read error at logical 0x1000")
	}
}

func writeBytes(b []byte) func(io.Writer) (int64, error) {
	return func(w io.Writer) (int64, error) {
		n, err := w.Write(b)
		return int64(n), err
	}
}

// dirNames lists dir, to prove no temporary file is left behind.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileSuccess(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.stream")
	if err := writeFile(context.Background(), path, writeBytes([]byte("stream bytes"))); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "stream bytes" {
		t.Fatalf("read back %q, %v", got, err)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("directory holds %q, want only s.stream", names)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 (the stream holds every file of the snapshot)", st.Mode())
	}
}

// TestWriteFileFailureLeavesNothing: a send that fails midway leaves no
// FILE, no temporary file, and an existing FILE as it was.
func TestWriteFileFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.stream")
	err := writeFile(context.Background(), path, failAfter(3<<20))
	if err == nil || !strings.Contains(err.Error(), "read error at logical 0x1000") ||
		!strings.Contains(err.Error(), path+" was not written") {
		t.Fatalf("err = %v", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("failed send left %q", names)
	}

	if err := os.WriteFile(path, []byte("old stream"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(context.Background(), path, failAfter(10)); err == nil {
		t.Fatal("want an error")
	}
	if got, _ := os.ReadFile(path); string(got) != "old stream" {
		t.Errorf("existing FILE changed to %q", got)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("failed send left %q", names)
	}
}

func TestWriteFileBadDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "s.stream")
	err := writeFile(context.Background(), path, writeBytes([]byte("x")))
	want := "cannot create " + path + ": no such file or directory"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

// TestWriteFileSpecial: a FILE that is not a regular file (here a fifo, as
// /dev/null would be) is written in place, never replaced.
func TestWriteFileSpecial(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	got := make(chan []byte)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(f)
		f.Close()
		got <- b
	}()
	if err := writeFile(context.Background(), fifo, writeBytes([]byte("through the pipe"))); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "through the pipe" {
		t.Errorf("reader got %q", b)
	}
	if st, err := os.Lstat(fifo); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo replaced: %v %v", st.Mode(), err)
	}
}

func TestSendErrorNamesInterruption(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sendError(ctx, context.Canceled); !strings.HasPrefix(err.Error(), "send interrupted") {
		t.Errorf("got %q", err)
	}
	if err := sendError(context.Background(), errors.New("bad block")); err.Error() != "send failed: bad block" {
		t.Errorf("got %q", err)
	}
}

func TestSendRefusesToOverwriteDevice(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, []byte("not really btrfs"), 0o600); err != nil {
		t.Fatal(err)
	}
	con := &console{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}
	err := runSend(context.Background(), SendOptions{File: filepath.Join(dir, ".", "disk.img")}, con, []string{img, "snap"})
	if err == nil || !strings.Contains(err.Error(), "refusing to write the stream over") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(img); string(b) != "not really btrfs" {
		t.Errorf("image changed to %q", b)
	}
}

// TestRefusalWording: sendgen's refusals reach the user in the CLI's words,
// with what to do instead.
func TestRefusalWording(t *testing.T) {
	vol := &btrfsread.Subvolume{ID: 256, Path: "vol"}
	top := &btrfsread.Subvolume{ID: btrfsread.FSTreeID}
	for _, c := range []struct {
		sv   *btrfsread.Subvolume
		role sendgen.Role
		want string
	}{
		{vol, sendgen.RoleChild, "subvolume vol is not read-only; snapshot it with `btrfs subvolume snapshot -r`, or pass --allow-writable if the image is not mounted anywhere"},
		{vol, sendgen.RoleParent, "parent subvolume vol is not read-only; snapshot it"},
		{vol, sendgen.RoleClone, "clone source vol is not read-only; snapshot it"},
		{top, sendgen.RoleChild, "the top level (id 5) cannot be sent, as with the kernel's send; send one of its subvolumes ('sendfs list' shows them)"},
		{top, sendgen.RoleParent, "the top level (id 5) cannot be a parent, as with the kernel's send; give a read-only snapshot"},
		{top, sendgen.RoleClone, "the top level (id 5) cannot be a clone source, as with the kernel's send; give a read-only snapshot"},
	} {
		err := sendgen.CheckSubvolume(c.sv, c.role, false)
		if got := fmt.Sprint(refusal(err)); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s as %s: %q, want %q", c.sv, c.role, got, c.want)
		}
		// Wrapped, as NewStream's errors reach the CLI.
		if got := fmt.Sprint(refusal(fmt.Errorf("context: %w", err))); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s as %s, wrapped: %q", c.sv, c.role, got)
		}
	}
	if err := sendgen.CheckSubvolume(vol, sendgen.RoleChild, true); err != nil {
		t.Errorf("--allow-writable: %v", err)
	}
	other := errors.New("other")
	if refusal(other) != other {
		t.Error("refusal changed an error that is not a refusal")
	}
}
