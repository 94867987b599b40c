package snapdiff

import (
	"testing"

	"sendfs/sendgen"
)

func cmd(c sendgen.Cmd, attrs ...any) *sendgen.Command {
	var out sendgen.Command
	out.Reset(c)
	for i := 0; i < len(attrs); i += 2 {
		out.Bytes(attrs[i].(sendgen.Attr), []byte(attrs[i+1].(string)))
	}
	return &out
}

// TestModel replays the shapes of an incremental stream: a new file made
// under an orphan name and moved into place, a directory moved with its
// untouched contents, a file renamed by LINK then UNLINK, a deletion.
func TestModel(t *testing.T) {
	m := newModel(true)
	for _, c := range []*sendgen.Command{
		cmd(sendgen.CmdSnapshot),
		cmd(sendgen.CmdMkfile, sendgen.AttrPath, "o260-7-0"),
		cmd(sendgen.CmdRename, sendgen.AttrPath, "a", sendgen.AttrPathTo, "b"),
		cmd(sendgen.CmdRename, sendgen.AttrPath, "o260-7-0", sendgen.AttrPathTo, "b/new"),
		cmd(sendgen.CmdWrite, sendgen.AttrPath, "b/x/f"),
		cmd(sendgen.CmdLink, sendgen.AttrPath, "g2", sendgen.AttrPathLink, "g"),
		cmd(sendgen.CmdUnlink, sendgen.AttrPath, "g"),
		cmd(sendgen.CmdUnlink, sendgen.AttrPath, "b/old"),
		cmd(sendgen.CmdEnd),
	} {
		if err := m.apply(c); err != nil {
			t.Fatal(err)
		}
	}
	type state struct {
		path, orig    string
		existed, live bool
		created, data bool
	}
	want := map[string]state{
		"b":   {"b", "a", true, true, false, false},
		"new": {"b/new", "", false, true, true, false},
		"f":   {"b/x/f", "a/x/f", true, true, false, true},
		"g":   {"", "g", true, false, false, false},
		"g2":  {"g2", "", false, true, false, false},
		"old": {"", "a/old", true, false, false, false},
		"x":   {"b/x", "a/x", true, true, false, false},
	}
	byName := map[string]*entry{}
	for _, e := range m.all {
		byName[e.name] = e
	}
	for name, w := range want {
		e := byName[name]
		if e == nil {
			t.Errorf("no entry %s", name)
			continue
		}
		path := ""
		if e.live {
			path = e.path()
		}
		got := state{path, e.origPath(), e.existed, e.live, e.ino.created, e.ino.data}
		if !e.existed {
			got.orig = ""
		}
		if got != w {
			t.Errorf("%s: %+v, want %+v", name, got, w)
		}
	}
	if byName["g2"].ino != byName["g"].ino {
		t.Errorf("a LINK shares its target's inode")
	}
	if _, err := m.resolve("a/x"); err == nil {
		t.Errorf("a/x resolves after a moved away")
	}
}
