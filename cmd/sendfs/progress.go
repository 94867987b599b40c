package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
)

// progressInterval bounds how often the progress line is redrawn.
const progressInterval = 250 * time.Millisecond

// progressLine draws one line on a terminal, rewritten in place:
//
//	1.2 GiB of 3.4 GiB (35%), 512 MiB/s, 4s left
//
// Update may be called as often as the writer likes and from any goroutine;
// it redraws at most every progressInterval.
type progressLine struct {
	mu     sync.Mutex
	w      io.Writer
	now    func() time.Time
	total  int64
	done   int64
	start  time.Time
	drawn  time.Time // when the line was last drawn
	length int       // length of the line on screen, to blank it
}

// newProgressLine starts the clock; the first line is drawn one interval
// later, when the rate means something.
func newProgressLine(w io.Writer, total int64, now func() time.Time) *progressLine {
	start := now()
	return &progressLine{w: w, now: now, total: total, start: start, drawn: start}
}

// Update records that done bytes have been written so far.
func (p *progressLine) Update(done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = done
	if t := p.now(); t.Sub(p.drawn) >= progressInterval {
		p.drawn = t
		p.draw(p.text(t))
	}
}

// Clear blanks the line, leaving the cursor at its start.
func (p *progressLine) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.length > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.length))
		p.length = 0
	}
}

// Summary prints the final total and average rate on a line of its own.
func (p *progressLine) Summary() {
	p.mu.Lock()
	defer p.mu.Unlock()
	elapsed := p.now().Sub(p.start)
	fmt.Fprintf(p.w, "sent %s in %s (%s/s)\n", humanize.IBytes(uint64(p.done)),
		elapsed.Round(100*time.Millisecond), humanize.IBytes(uint64(rate(p.done, elapsed))))
}

func (p *progressLine) draw(line string) {
	pad := ""
	if n := p.length - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
	p.length = len(line)
}

// text is the progress line at time t: bytes, share of the total, average
// rate since the start, and the time left at that rate (rounded up, and
// only after a second: earlier guesses swing wildly).
func (p *progressLine) text(t time.Time) string {
	elapsed := t.Sub(p.start)
	line := humanize.IBytes(uint64(p.done))
	if p.total > 0 {
		line += fmt.Sprintf(" of %s (%d%%)", humanize.IBytes(uint64(p.total)), p.done*100/p.total)
	}
	r := rate(p.done, elapsed)
	if r <= 0 {
		return line
	}
	line += fmt.Sprintf(", %s/s", humanize.IBytes(uint64(r)))
	if left := p.total - p.done; left > 0 && elapsed >= time.Second {
		eta := time.Duration(float64(left) / r * float64(time.Second))
		line += fmt.Sprintf(", %s left", (eta + time.Second - 1).Truncate(time.Second))
	}
	return line
}

// rate is bytes per second over elapsed; 0 before any time has passed.
func rate(bytes int64, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(bytes) / elapsed.Seconds()
}
