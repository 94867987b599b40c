package mountinfo

import "testing"

func TestUnescape(t *testing.T) {
	if got := unescape(`/mnt/a\040b\134`); got != `/mnt/a b\` {
		t.Errorf("got %q", got)
	}
}

func TestFindRoot(t *testing.T) {
	m, ok, err := Find("/")
	if err != nil || !ok {
		t.Fatalf("Find(/) = %v, %v, %v: the root is always a mount point", m, ok, err)
	}
	if m.FSType == "" || m.Options == "" {
		t.Errorf("Find(/) = %+v: type and options missing", m)
	}
}
