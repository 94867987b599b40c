package main

// Where a send writes its stream: the checks that keep it from overwriting
// the filesystem being read, the -f FILE that appears only when complete,
// and writes that a signal can interrupt.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

// fileID identifies what a path stands for on this machine: an inode
// (dev, ino) or a block device (rdev).
type fileID struct {
	block    bool
	dev, ino uint64
}

// fileIDs are the identities behind one path: the path's own, the file
// backing it when it is a loop device, and the whole disk when it is a
// partition. Writing one path damages another when they share one of them.
type fileIDs struct {
	self    fileID
	backing *fileID // loop device: its backing file
	disk    *fileID // partition: its whole disk
}

// identify stats path (following symlinks) and finds what stands behind it.
func identify(path string) (fileIDs, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileIDs{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return fileIDs{self: fileID{dev: st.Dev, ino: st.Ino}}, nil
	}
	ids := fileIDs{self: fileID{block: true, dev: st.Rdev}}
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	if b, err := os.ReadFile(sys + "/../dev"); err == nil && exists(sys+"/partition") {
		if maj, min, ok := parseMajMin(string(b)); ok {
			ids.disk = &fileID{block: true, dev: unix.Mkdev(maj, min)}
		}
	}
	if f, err := os.Open(path); err == nil {
		if info, err := unix.IoctlLoopGetStatus64(int(f.Fd())); err == nil {
			ids.backing = &fileID{dev: info.Device, ino: info.Inode}
		}
		f.Close()
	}
	return ids, nil
}

func parseMajMin(s string) (maj, min uint32, ok bool) {
	a, b, found := strings.Cut(strings.TrimSpace(s), ":")
	x, err1 := strconv.ParseUint(a, 10, 32)
	y, err2 := strconv.ParseUint(b, 10, 32)
	return uint32(x), uint32(y), found && err1 == nil && err2 == nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// overlaps reports whether writing a damages b or b's contents reach a:
// the same file (links and symlinks included), a loop device and its backing
// file, or a partition and its disk.
func (a fileIDs) overlaps(b fileIDs) bool {
	same := func(x, y *fileID) bool { return x != nil && y != nil && *x == *y }
	return same(&a.self, &b.self) || same(a.backing, &b.self) || same(&a.self, b.backing) ||
		same(a.backing, b.backing) || same(a.disk, &b.self) || same(&a.self, b.disk)
}

// checkDestination refuses a FILE that is, or is backed by, one of the
// DEVICEs being read (or a DEVICE that is a loop device backed by FILE):
// the stream would replace the filesystem it is read from.
func checkDestination(file string, devices []string) error {
	if file == "" {
		return nil
	}
	out, err := identify(file)
	if err != nil {
		return nil // FILE does not exist yet: it cannot be a device
	}
	for _, dev := range devices {
		if in, err := identify(dev); err == nil && out.overlaps(in) {
			return fmt.Errorf("refusing to write the stream over %s, which is, or shares its storage with, the DEVICE %s being read", file, dev)
		}
	}
	return nil
}

// checkStdout refuses to send into a closed stdout. Go's runtime opens
// /dev/null read-write on a closed descriptor 0-2 before main runs, so a
// stdout that is /dev/null open for both reading and writing is taken as
// closed: a shell's '> /dev/null' opens it write-only.
func checkStdout() error {
	var st unix.Stat_t
	if err := unix.Fstat(1, &st); err != nil {
		return errors.New("stdout is closed; redirect it or use -f FILE")
	}
	flags, err := unix.FcntlInt(1, unix.F_GETFL, 0)
	null := st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == unix.Mkdev(1, 3)
	if err == nil && null && flags&unix.O_ACCMODE == unix.O_RDWR {
		return errors.New("stdout is closed (or /dev/null opened read-write); redirect it ('> /dev/null' to discard) or use -f FILE")
	}
	return nil
}

// interruptibleWriter is a Writer whose Write returns as soon as ctx is
// cancelled, even when the write underneath is blocked (a full pipe whose
// reader stopped reading): the signal that cancels ctx must end the send
// within a second. The writes run on a goroutine of their own; a blocked
// one is abandoned, and the process exits. Close ends the goroutine.
type interruptibleWriter struct {
	ctx     context.Context
	req     chan []byte
	res     chan writeResult
	written int64 // bytes written underneath
}

type writeResult struct {
	n   int
	err error
}

func newInterruptibleWriter(ctx context.Context, w io.Writer) *interruptibleWriter {
	iw := &interruptibleWriter{ctx: ctx, req: make(chan []byte), res: make(chan writeResult, 1)}
	go func() {
		for p := range iw.req {
			n, err := w.Write(p)
			iw.res <- writeResult{n, err}
		}
	}()
	return iw
}

func (iw *interruptibleWriter) Write(p []byte) (int, error) {
	select {
	case iw.req <- p:
	case <-iw.ctx.Done():
		return 0, iw.ctx.Err()
	}
	select {
	case r := <-iw.res:
		iw.written += int64(r.n)
		return r.n, r.err
	case <-iw.ctx.Done():
		return 0, iw.ctx.Err()
	}
}

// Close stops the writing goroutine once its write (if any) returns.
func (iw *interruptibleWriter) Close() { close(iw.req) }

// outputWriter buffers a stream on its way to w: the pipeline hands over a
// chunk per small file, and a write per chunk (two goroutine handoffs on
// an interruptibleWriter) cost more than copying them. A write of at least
// directWrite bytes (a data command of a big file) goes straight to w
// instead: copying it would only add to the writer's work.
type outputWriter struct {
	*bufio.Writer
	w io.Writer
}

const (
	outputBuffer = 1 << 20
	directWrite  = 32 << 10
)

func newOutputWriter(w io.Writer) *outputWriter {
	return &outputWriter{bufio.NewWriterSize(w, outputBuffer), w}
}

func (o *outputWriter) Write(p []byte) (int, error) {
	if len(p) < directWrite {
		return o.Writer.Write(p)
	}
	if err := o.Flush(); err != nil {
		return 0, err
	}
	return o.w.Write(p)
}

// writeInterruptibly runs write into w through iw and a buffer, then closes
// iw. On failure nothing more is written: iw.written says how much was.
func writeInterruptibly(ctx context.Context, w io.Writer, write func(io.Writer) (int64, error)) (*interruptibleWriter, error) {
	iw := newInterruptibleWriter(ctx, w)
	defer iw.Close()
	bw := newOutputWriter(iw)
	if _, err := write(bw); err != nil {
		return iw, err
	}
	return iw, bw.Flush()
}

// interruptible runs fn (an open that may block, such as a fifo's) and
// returns its result, or ctx's error as soon as ctx is cancelled.
func interruptible[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// writeFile runs write into path so that path never holds an incomplete
// stream: write goes to an unnamed temporary file in the same directory
// (O_TMPFILE; a named one where the filesystem lacks it), which is synced
// and linked or renamed to path only on success. Paths that are not regular
// files (/dev/null, a fifo) are written directly.
func writeFile(ctx context.Context, path string, write func(io.Writer) (int64, error)) error {
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return writeSpecial(ctx, path, write)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, named, err := createTemp(dir, base)
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", path, createCause(filepath.Clean(dir), err))
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			if named {
				os.Remove(tmp.Name())
			}
		}
	}()
	bw := newOutputWriter(tmp)
	if _, err := write(bw); err != nil {
		return fmt.Errorf("%w; %s was not written", err, path)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, pathErrorCause(err))
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, pathErrorCause(err))
	}
	if !named {
		if err := linkTemp(tmp, dir, base, path); err != nil {
			return fmt.Errorf("cannot create %s: %w", path, pathErrorCause(err))
		}
		done = true
		return tmp.Close()
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, pathErrorCause(err))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("cannot create %s: %w", path, pathErrorCause(err))
	}
	done = true
	return nil
}

// createTemp opens an unnamed temporary file (mode 0600) in dir, which a
// crash or SIGKILL cannot leave behind; named reports the fallback to a
// named ".BASE.sendfs-*" file on filesystems without O_TMPFILE.
func createTemp(dir, base string) (f *os.File, named bool, err error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, base)), false, nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, false, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	f, err = os.CreateTemp(dir, "."+base+".sendfs-*")
	return f, true, err
}

// linkTemp gives the complete unnamed file tmp its name: linked straight to
// path when path does not exist, else linked under a temporary name that is
// renamed over path (link cannot replace a file).
func linkTemp(tmp *os.File, dir, base, path string) error {
	link := func(to string) error {
		proc := "/proc/self/fd/" + strconv.Itoa(int(tmp.Fd()))
		err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, to, unix.AT_SYMLINK_FOLLOW)
		if errors.Is(err, unix.ENOENT) { // no /proc: needs CAP_DAC_READ_SEARCH
			err = unix.Linkat(int(tmp.Fd()), "", unix.AT_FDCWD, to, unix.AT_EMPTY_PATH)
		}
		return err
	}
	err := link(path)
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	for i := 0; ; i++ {
		name := filepath.Join(dir, fmt.Sprintf(".%s.sendfs-%d-%d", base, os.Getpid(), i))
		err := link(name)
		if errors.Is(err, unix.EEXIST) && i < 100 {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.Rename(name, path); err != nil {
			os.Remove(name)
			return err
		}
		return nil
	}
}

// createCause words the failure to create a file in dir: a directory such
// as /proc that exists but takes no new files says so instead of the bare
// "no such file or directory".
func createCause(dir string, err error) error {
	cause := pathErrorCause(err)
	if st, serr := os.Stat(dir); serr == nil && st.IsDir() && errors.Is(cause, fs.ErrNotExist) {
		return fmt.Errorf("its directory %s does not accept new files (%w)", dir, cause)
	}
	return cause
}

// writeSpecial writes into an existing file that is not a regular file:
// replacing /dev/null by a stream would be a disaster. Opening a fifo blocks
// until a reader comes; a signal interrupts that wait too.
func writeSpecial(ctx context.Context, path string, write func(io.Writer) (int64, error)) error {
	f, err := interruptible(ctx, func() (*os.File, error) { return os.OpenFile(path, os.O_WRONLY, 0) })
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", path, pathErrorCause(err))
	}
	iw, err := writeInterruptibly(ctx, f, write)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("cannot write %s: %w", path, pathErrorCause(cerr))
	}
	if err != nil {
		return fmt.Errorf("%w; the %s written to %s are an incomplete stream", err, humanize.IBytes(uint64(iw.written)), path)
	}
	return nil
}

// pathErrorCause drops the operation and the (temporary) file name from an
// *fs.PathError: the message names the user's FILE instead.
func pathErrorCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
