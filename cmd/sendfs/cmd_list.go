package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/google/uuid"
	"github.com/spf13/pflag"

	"sendfs/btrfsread"
	"sendfs/fusefs"
)

// ListOptions are the flags of sendfs list.
type ListOptions struct {
	DeviceOptions
	JSON bool
}

// AddFlags defines the list flags on f.
func (o *ListOptions) AddFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.JSON, "json", false, "print a JSON array with the full values instead of a table")
	o.DeviceOptions.AddFlags(f)
}

func newListCommand() *command {
	var opts ListOptions
	flags := pflag.NewFlagSet("list", pflag.ContinueOnError)
	opts.AddFlags(flags)
	return &command{
		Name:    "list",
		Usage:   "list [--json] [--degraded] [--scan] DEVICE...",
		Summary: "list the subvolumes and snapshots of a filesystem",
		Help: `List every subvolume of the btrfs filesystem on DEVICE (a block device or an
image file; give every member of a multi-device filesystem), sorted by id,
like 'btrfs subvolume list -a -u -q -R' on the mounted filesystem. The top
level (id 5) is not listed. The filesystem is only read; it may be mounted.

Columns: ID; TOP (id of the subvolume it is linked in); GEN (last
transaction that changed it); CTRANSID (last change of its contents);
CREATED (date and age); RO (ro = read-only, can be sent; rw = writable);
UUID; PARENT UUID (the subvolume it is a snapshot of); RECEIVED UUID (set
by btrfs receive); PATH (from the top level, what 'sendfs send' takes).
Parent and received uuids are shortened to 8 digits, '-' when unset.

--json prints an array of objects with the full values: id, parent_id,
path, path_escaped (the path as the table prints it, quoted when it is not
UTF-8 or holds control characters: the exact bytes), read_only, generation,
ctransid, otransid, created (RFC 3339, UTC), uuid, parent_uuid,
received_uuid (36-character uuids, null when unset), mount_name (the
subvolume's directory under snapshots/ in 'sendfs mount').

` + devicesHelp + `

Examples:
  sendfs list /dev/sdb1
  sendfs list disk1.img disk2.img
  sendfs list --json backup.img | jq -r '.[] | select(.read_only) | .path'`,
		Flags: flags,
		Run: func(ctx context.Context, args []string) error {
			return runList(ctx, opts, stdConsole(), args)
		},
	}
}

// runList prints the subvolumes of the filesystem on the devices args.
func runList(_ context.Context, opts ListOptions, con *console, args []string) error {
	if len(args) == 0 {
		return usageErrorf("no DEVICE given")
	}
	fsys, err := openFS(args, opts.DeviceOptions, cliLogger(con.Err))
	if err != nil {
		return err
	}
	defer fsys.Close()
	var all []*btrfsread.Subvolume
	err = fsys.Retry(func(v *btrfsread.FS) error { // a live filesystem may commit meanwhile
		all, err = v.Subvolumes()
		return err
	})
	if err != nil {
		return fmt.Errorf("cannot list subvolumes: %w", err)
	}
	var subvols []*btrfsread.Subvolume
	for _, sv := range all {
		if sv.ID != btrfsread.FSTreeID {
			subvols = append(subvols, sv)
		}
	}
	sort.Slice(subvols, func(i, j int) bool { return subvols[i].ID < subvols[j].ID })
	if opts.JSON {
		return writeListJSON(con.Out, subvols)
	}
	return writeListTable(con.Out, subvols, time.Now())
}

// subvolJSON is one element of 'sendfs list --json'. Field order is output
// order; keep it stable, scripts read it.
type subvolJSON struct {
	ID           uint64  `json:"id"`
	ParentID     uint64  `json:"parent_id"`
	Path         string  `json:"path"`
	PathEscaped  string  `json:"path_escaped"`
	ReadOnly     bool    `json:"read_only"`
	Generation   uint64  `json:"generation"`
	CTransid     uint64  `json:"ctransid"`
	OTransid     uint64  `json:"otransid"`
	Created      *string `json:"created"`
	UUID         *string `json:"uuid"`
	ParentUUID   *string `json:"parent_uuid"`
	ReceivedUUID *string `json:"received_uuid"`
	MountName    string  `json:"mount_name"`
}

func writeListJSON(w io.Writer, subvols []*btrfsread.Subvolume) error {
	names := fusefs.MountNames(subvols)
	out := make([]subvolJSON, 0, len(subvols))
	for _, sv := range subvols {
		r := &sv.Root
		v := subvolJSON{
			ID:           sv.ID,
			ParentID:     sv.ParentID,
			Path:         sv.Path,
			PathEscaped:  sv.String(),
			ReadOnly:     sv.ReadOnly(),
			Generation:   r.Generation,
			CTransid:     r.CTransid,
			OTransid:     r.OTransid,
			UUID:         uuidJSON(r.UUID),
			ParentUUID:   uuidJSON(r.ParentUUID),
			ReceivedUUID: uuidJSON(r.ReceivedUUID),
			MountName:    names[sv.ID],
		}
		if t, ok := timeOf(r.OTime); ok {
			s := t.UTC().Format(time.RFC3339Nano)
			v.Created = &s
		}
		out = append(out, v)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func uuidJSON(u btrfsread.UUID) *string {
	if u.IsZero() {
		return nil
	}
	s := formatUUID(u)
	return &s
}

func writeListTable(w io.Writer, subvols []*btrfsread.Subvolume, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTOP\tGEN\tCTRANSID\tCREATED\tRO\tUUID\tPARENT UUID\tRECEIVED UUID\tPATH")
	for _, sv := range subvols {
		r := &sv.Root
		created := "-"
		if t, ok := timeOf(r.OTime); ok {
			created = t.Local().Format("2006-01-02 15:04:05") + " (" + humanize.RelTime(t, now, "ago", "from now") + ")"
		}
		ro := "rw"
		if sv.ReadOnly() {
			ro = "ro"
		}
		uuidText := "-"
		if !r.UUID.IsZero() {
			uuidText = formatUUID(r.UUID)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			sv.ID, sv.ParentID, r.Generation, r.CTransid, created, ro, uuidText,
			shortUUID(r.ParentUUID), shortUUID(r.ReceivedUUID), sv.String())
	}
	return tw.Flush()
}

// formatUUID is the canonical 36-character form, as btrfs-progs prints it.
func formatUUID(u btrfsread.UUID) string { return uuid.UUID(u).String() }

// shortUUID keeps the first 8 hex digits, enough to tell snapshots apart
// by eye; '-' when unset.
func shortUUID(u btrfsread.UUID) string {
	if u.IsZero() {
		return "-"
	}
	return formatUUID(u)[:8]
}

// timeOf converts an on-disk time; ok is false when it was never set.
func timeOf(ts btrfsread.Timespec) (t time.Time, ok bool) {
	if ts.Sec == 0 && ts.Nsec == 0 || ts.Sec > 1<<62 {
		return time.Time{}, false
	}
	return time.Unix(int64(ts.Sec), int64(ts.Nsec)), true
}
