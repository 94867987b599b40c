package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestProgressLine(t *testing.T) {
	var b bytes.Buffer
	clock := &fakeClock{t: time.Unix(1000, 0)}
	p := newProgressLine(&b, 1000<<20, clock.now)

	clock.advance(time.Second)
	p.Update(100 << 20)
	want := "\r100 MiB of 1000 MiB (10%), 100 MiB/s, 9s left"
	if b.String() != want {
		t.Fatalf("first draw %q, want %q", b.String(), want)
	}

	// Updates within progressInterval of the last draw do not redraw.
	b.Reset()
	for i := 0; i < 100; i++ {
		clock.advance(time.Millisecond)
		p.Update(int64(101+i) << 20)
	}
	if b.Len() != 0 {
		t.Errorf("redrawn within %v: %q", progressInterval, b.String())
	}

	clock.advance(progressInterval)
	p.Update(1000 << 20)
	if got := b.String(); !strings.HasPrefix(got, "\r1000 MiB of 1000 MiB (100%)") || strings.Contains(got, "left") {
		t.Errorf("final draw %q", got)
	}

	drawn := strings.TrimRight(strings.TrimPrefix(b.String(), "\r"), " ")
	b.Reset()
	p.Clear()
	if got := b.String(); got != "\r"+strings.Repeat(" ", len(drawn))+"\r" {
		t.Errorf("Clear wrote %q, want blanks over the line", got)
	}
	b.Reset()
	p.Clear()
	if b.Len() != 0 {
		t.Errorf("second Clear wrote %q", b.String())
	}

	p.Summary()
	if got := b.String(); !strings.HasPrefix(got, "sent 1000 MiB in 1.4s (") || !strings.HasSuffix(got, "/s)\n") {
		t.Errorf("summary %q", got)
	}
}

// TestProgressShorterLineBlanksTail: a shorter line overwrites the rest of
// the longer one it replaces.
func TestProgressShorterLineBlanksTail(t *testing.T) {
	var b bytes.Buffer
	p := &progressLine{w: &b}
	p.draw("0123456789")
	b.Reset()
	p.draw("abc")
	if got, want := b.String(), "\rabc       "; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestProgressFirstDrawWaits: nothing is drawn at the very start, and the
// time left is not guessed in the first second.
func TestProgressFirstDrawWaits(t *testing.T) {
	var b bytes.Buffer
	clock := &fakeClock{t: time.Unix(1000, 0)}
	p := newProgressLine(&b, 100<<20, clock.now)
	p.Update(1)
	if b.Len() != 0 {
		t.Errorf("drawn at the start: %q", b.String())
	}
	clock.advance(progressInterval)
	p.Update(10 << 20)
	if got, want := b.String(), "\r10 MiB of 100 MiB (10%), 40 MiB/s"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
