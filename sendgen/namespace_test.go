package sendgen

import (
	"strings"
	"testing"
)

// TestNamespaceCheck feeds command sequences to the namespace of a full send
// (an empty root) and checks that each violation a receiver would reject,
// or apply to the wrong inode, is caught at the command that makes it.
func TestNamespaceCheck(t *testing.T) {
	mk := func(cmd Cmd, attrs ...any) *Command {
		c := &Command{Cmd: cmd}
		for i := 0; i < len(attrs); i += 2 {
			c.Bytes(attrs[i].(Attr), []byte(attrs[i+1].(string)))
		}
		return c
	}
	mkdir := func(p string) *Command { return mk(CmdMkdir, AttrPath, p) }
	mkfile := func(p string) *Command { return mk(CmdMkfile, AttrPath, p) }
	rename := func(from, to string) *Command { return mk(CmdRename, AttrPath, from, AttrPathTo, to) }
	link := func(p, target string) *Command { return mk(CmdLink, AttrPath, p, AttrPathLink, target) }
	unlink := func(p string) *Command { return mk(CmdUnlink, AttrPath, p) }
	rmdir := func(p string) *Command { return mk(CmdRmdir, AttrPath, p) }
	utimes := func(p string) *Command { return mk(CmdUtimes, AttrPath, p) }
	base := []*Command{mkdir("a"), mkdir("a/b"), mkfile("f"), mkfile("a/b/g"), link("a/h", "f")}

	cases := []struct {
		name    string
		cmds    []*Command
		wantErr string // "" when every command applies
	}{
		{"valid", []*Command{rename("a/b", "c"), utimes("c/g"), unlink("a/h"), unlink("f"), rmdir("a"), rename("c", "a")}, ""},
		{"rename-missing", []*Command{rename("a/x", "y")}, `rename "a/x" names a path that does not exist`},
		{"parent-missing", []*Command{mkfile("x/y")}, `mkfile "x/y" names a directory that does not exist`},
		{"under-a-file", []*Command{mkfile("f/y")}, `mkfile "f/y" names a directory that does not exist`},
		{"replace", []*Command{rename("f", "a/h")}, `rename "a/h" would replace an existing entry`},
		{"into-itself", []*Command{rename("a", "a/b/a2")}, `would move a directory into itself`},
		{"rmdir-not-empty", []*Command{rmdir("a/b")}, `still has 1 entries`},
		{"rmdir-a-file", []*Command{rmdir("f")}, `names the wrong file type`},
		{"link-a-dir", []*Command{link("x", "a")}, `would hard-link a directory`},
		{"write-a-dir", []*Command{mk(CmdTruncate, AttrPath, "a/b")}, `truncate "a/b" names a directory`},
		{"stale-path", []*Command{rename("a/b", "c"), utimes("a/b/g")}, `utimes "a/b/g" names a path that does not exist`},
		{"moved-dir-cache", []*Command{utimes("a/b/g"), rename("a", "z"), mkdir("a"), utimes("a/b")}, `utimes "a/b" names a path that does not exist`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := &namespace{root: &nsObj{dir: &nsDir{baseKnown: true}}, objs: map[uint64]*nsObj{}, dirs: map[string]*nsObj{}}
			var err error
			for _, c := range append(append([]*Command{}, base...), tc.cmds...) {
				if err = ns.apply(c, nil); err != nil {
					break
				}
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestNamespaceCheckIdentity: a path the engine computed for one inode must
// reach that inode at the receiver.
func TestNamespaceCheckIdentity(t *testing.T) {
	ns := &namespace{root: &nsObj{dir: &nsDir{baseKnown: true}}, objs: map[uint64]*nsObj{}, dirs: map[string]*nsObj{}}
	a, b := &nsObj{id: inoGen{257, 1}}, &nsObj{id: inoGen{258, 1}}
	ns.root.dir.setKid([]byte("a"), a)
	ns.root.dir.setKid([]byte("b"), b)
	c := &Command{Cmd: CmdUtimes}
	c.Bytes(AttrPath, []byte("a"))
	if err := ns.apply(c, map[string]inoGen{"a": {257, 1}}); err != nil {
		t.Fatalf("path of the right inode: %v", err)
	}
	err := ns.apply(c, map[string]inoGen{"a": {258, 1}})
	if err == nil || !strings.Contains(err.Error(), "reaches inode 257 (generation 1) at the receiver, not inode 258") {
		t.Fatalf("path of another inode: error %v", err)
	}
}
