package btrfsread

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// slowMul multiplies in GF(2^8) mod 0x11d bit by bit, independently of the
// tables.
func slowMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1d
		}
		b >>= 1
	}
	return p
}

func TestGFTables(t *testing.T) {
	for a := range 256 {
		for b := range 256 {
			if got, want := gfMul(byte(a), byte(b)), slowMul(byte(a), byte(b)); got != want {
				t.Fatalf("gfMul(%d, %d) = %d, want %d", a, b, got, want)
			}
		}
		if a != 0 && gfMul(byte(a), gfInv(byte(a))) != 1 {
			t.Fatalf("gfInv(%d) is not an inverse", a)
		}
	}
	if gfPow(1) != 2 || gfPow(-1) != gfInv(2) || gfPow(255) != 1 {
		t.Fatal("gfPow is not the powers of 2")
	}
}

// memRAID builds a RAID5 or RAID6 chunk of rows full rows over n in-memory
// devices with random data and parity computed the slow way, and returns the
// filesystem and the chunk's logical content.
func memRAID(t *testing.T, profile uint64, n, rows int, seed uint64) (*FS, []byte) {
	t.Helper()
	const L = 4096
	parity := 1
	if profile == bgRAID6 {
		parity = 2
	}
	d := n - parity
	rng := rand.New(rand.NewPCG(seed, 1))
	logical := make([]byte, rows*d*L)
	for i := range logical {
		logical[i] = byte(rng.Uint32())
	}
	devs := make([][]byte, n)
	for i := range devs {
		devs[i] = make([]byte, rows*L)
	}
	for r := range rows {
		p, q := make([]byte, L), make([]byte, L)
		for j := range d {
			data := logical[(r*d+j)*L : (r*d+j+1)*L]
			copy(devs[(r+j)%n][r*L:], data)
			coef := byte(1)
			for range j {
				coef = slowMul(coef, 2)
			}
			for i := range L {
				p[i] ^= data[i]
				q[i] ^= slowMul(coef, data[i])
			}
		}
		copy(devs[(r+d)%n][r*L:], p)
		if parity == 2 {
			copy(devs[(r+d+1)%n][r*L:], q)
		}
	}
	c := chunk{logical: 1 << 20, length: uint64(len(logical)), stripeLen: L, typ: bgData | profile}
	fs := &FS{}
	for i := range devs {
		m := &member{Device: Device{Name: fmt.Sprintf("mem%d", i), R: bytes.NewReader(devs[i]), Size: int64(len(devs[i]))}}
		c.stripes = append(c.stripes, stripe{devid: uint64(i + 1), dev: m})
	}
	fs.chunks = chunkMap{c}
	return fs, logical
}

// TestRAID56Copies reads every stripe of RAID5/6 chunks with up to 4 data
// stripes through every copy, and with every set of members a RAID5 (one)
// or RAID6 (two) survives without: each copy that can be built gives the
// data, each that cannot says which devices it needs.
func TestRAID56Copies(t *testing.T) {
	for _, c := range []struct {
		profile uint64
		n       int
	}{{bgRAID5, 2}, {bgRAID5, 4}, {bgRAID6, 3}, {bgRAID6, 4}, {bgRAID6, 6}} {
		fs, want := memRAID(t, c.profile, c.n, 2*c.n, uint64(c.n))
		ch := &fs.chunks[0]
		t.Run(fmt.Sprintf("%s-%d", ch.profileName(), c.n), func(t *testing.T) {
			for m := range ch.copies() {
				got := make([]byte, len(want))
				if err := fs.readLogical(got, ch.logical, m, false); err != nil {
					t.Fatalf("copy %d: %v", m, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("copy %d: wrong bytes", m)
				}
			}
			maxLost := len(ch.stripes) - ch.dataStripes()
			for lost := range 1 << len(ch.stripes) {
				if bits.OnesCount(uint(lost)) > maxLost {
					continue
				}
				saved := make([]*member, len(ch.stripes))
				for i := range ch.stripes {
					saved[i] = ch.stripes[i].dev
					if lost&(1<<i) != 0 {
						ch.stripes[i].dev = nil
					}
				}
				// Like readData: each block from the first copy that reads.
				got := make([]byte, len(want))
				for off := 0; off < len(want); off += 512 {
					var err error
					for m := range ch.copies() {
						if err = fs.readLogical(got[off:off+512], ch.logical+uint64(off), m, false); err == nil {
							break
						}
						if !errors.Is(err, ErrMissingDevice) {
							t.Fatalf("members 0b%b lost: copy %d: %v", lost, m, err)
						}
					}
					if err != nil {
						t.Fatalf("members 0b%b lost: no copy of offset %d: %v", lost, off, err)
					}
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("members 0b%b lost: wrong bytes", lost)
				}
				for i := range ch.stripes {
					ch.stripes[i].dev = saved[i]
				}
			}
		})
	}
}
