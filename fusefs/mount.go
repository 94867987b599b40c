package fusefs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"time"

	"sendfs/internal/mountinfo"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// MountOptions tune the FUSE mount.
type MountOptions struct {
	// FsName shows in the first column of /proc/mounts (the device).
	FsName string
	// AllowOther lets other users in; default_permissions comes with it so
	// the kernel enforces the 0400/0500 modes (without it any user could
	// read every stream).
	AllowOther bool
	// Debug logs every FUSE request.
	Debug bool
}

// cacheTimeout is how long the kernel may keep entries and attributes when
// the tree is fixed at mount time (no Follow); a stream's bytes never change.
const cacheTimeout = time.Hour

// maxRequest is the largest READ: 1 MiB, the kernel's limit here.
const maxRequest = 1 << 20

// Mount serves r at dir. The returned server's Wait returns once the mount
// is gone (Unmount, or `fusermount3 -u` from outside).
func Mount(dir string, r *Root, o MountOptions) (*fuse.Server, error) {
	timeout := r.entryTimeout()
	level := slog.LevelWarn
	if o.Debug {
		level = slog.LevelDebug
	}
	logger := slog.NewLogLogger(r.log.Handler(), level)
	mountOpts := []string{"ro"}
	if o.AllowOther {
		mountOpts = append(mountOpts, "default_permissions")
	}
	opts := &fs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		UID:             r.owner.uid,
		GID:             r.owner.gid,
		Logger:          logger,
		RootStableAttr:  &fs.StableAttr{Mode: fuse.S_IFDIR, Ino: inoRoot},
		MountOptions: fuse.MountOptions{
			FsName:       o.FsName,
			Name:         "sendfs",
			AllowOther:   o.AllowOther,
			Options:      mountOpts,
			MaxWrite:     maxRequest,
			MaxReadAhead: maxRequest,
			// Splicing a 1 MiB reply cannot fit the 1 MiB pipe limit and
			// would be retried (and logged) on every READ.
			DisableSplice: true,
			DisableXAttrs: true,
			Debug:         o.Debug,
			Logger:        logger,
			PanicHandler:  r.handlerPanic,
		},
	}
	server, err := fs.Mount(dir, r, opts)
	if err != nil {
		return nil, err
	}
	if err := raiseReadahead(dir); err != nil {
		r.log.Debug("readahead left at the default", "err", err)
	}
	return server, nil
}

// handlerPanic turns a bug met while serving a request into EIO and one log
// line (the stack only with --debug); the mount keeps serving.
func (r *Root) handlerPanic(v any) fuse.Status {
	r.log.Error("internal error serving a request; returning EIO", "panic", v)
	r.log.Debug("stack of the internal error", "stack", string(debug.Stack()))
	return fuse.EIO
}

// raiseReadahead lets the kernel read ahead 1 MiB at a time (it caps FUSE
// readahead at the mount's bdi setting, 128 KiB by default). Only root may.
func raiseReadahead(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	knob := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(knob, []byte(fmt.Sprint(maxRequest/1024)), 0)
}

// Unmount detaches the mount at dir. When files are still open it unmounts
// lazily: the mount disappears at once, open files keep reading, and the
// server's Wait returns when the last one is closed. lazy reports that.
func Unmount(server *fuse.Server, dir string) (lazy bool, err error) {
	if server.Unmount() == nil {
		return false, nil
	}
	return true, lazyUnmount(dir)
}

func lazyUnmount(dir string) error {
	bin, err := exec.LookPath("fusermount3")
	if err != nil {
		bin, err = exec.LookPath("fusermount")
	}
	if err != nil {
		return unix.Unmount(dir, unix.MNT_DETACH)
	}
	out, err := exec.Command(bin, "-u", "-z", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -u -z %s: %v: %s", bin, dir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// CheckMountpoint explains why dir cannot be mounted on: missing, not a
// directory, not empty, already a mount, or a dead FUSE mount.
func CheckMountpoint(dir string) error {
	dead := fmt.Errorf("mountpoint %s is a dead FUSE mount (its server is gone); run `fusermount3 -u %s` first", dir, dir)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, unix.ENOTCONN):
		return dead
	case err != nil:
		return fmt.Errorf("mountpoint: %w", err)
	case !st.IsDir():
		return fmt.Errorf("mountpoint %s is not a directory", dir)
	}
	_, mounted, err := mountinfo.Find(dir)
	if err != nil {
		return err
	}
	if mounted {
		// stat may still answer from cached attributes; a listing does not.
		if _, err := os.ReadDir(dir); errors.Is(err, unix.ENOTCONN) {
			return dead
		}
		return fmt.Errorf("mountpoint %s is busy: something is already mounted there", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("mountpoint %s is not empty", dir)
	}
	return nil
}
