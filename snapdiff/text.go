package snapdiff

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"

	"sendfs/btrfsread"
)

// WriteText prints one change per line, aligned: kind, type, what changed
// (sizes in human units, metadata names), path ("from -> to" for a
// rename). Paths with control characters or bytes that are not UTF-8 are
// quoted.
func WriteText(w io.Writer, changes []Change) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range changes {
		detail := ""
		switch {
		case c.Kind == Deleted || c.Kind == Added:
			detail = sizeText(c.Size)
		case c.Data:
			detail = sizeText(c.OldSize) + " -> " + sizeText(c.Size)
		}
		if len(c.Meta) > 0 {
			detail = strings.TrimPrefix(detail+", "+strings.Join(c.Meta, ", "), ", ")
		}
		path := btrfsread.QuotePath(c.Path)
		if c.Kind == Renamed {
			path = btrfsread.QuotePath(c.From) + " -> " + path
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Kind, c.Type, detail, path)
	}
	return tw.Flush()
}

func sizeText(n *uint64) string {
	if n == nil {
		return ""
	}
	return humanize.IBytes(*n)
}
