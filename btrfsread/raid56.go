package btrfsread

import "crypto/subtle"

// RAID5/6 reconstruction. A row of a RAID5/6 chunk holds d data stripes,
// P (their XOR) and, for RAID6, Q = sum of g^j·D_j in GF(2^8) with the
// generator g = 2 and the polynomial 0x11d, as the kernel's lib/raid6
// computes it. Data stripe j of row r, then P, then Q sit on chunk stripe
// (r + j) % n.
//
// A block of a RAID5/6 chunk can be produced several ways, which the
// readers try in turn like the mirrors of RAID1 ("copies"): copy 0 reads
// the data stripe, copy 1 rebuilds it from the other data stripes and P.
// RAID6 adds copy 2, which rebuilds it from the other data stripes and Q
// (P lost too), and copies 2+k, which rebuild it together with the k-th
// other data stripe from P and Q. Every rebuilt block is checked by the
// caller like any copy (tree block checksum, data checksums), so a rebuild
// from a corrupt stripe is rejected, not returned.

// gfExp and gfLog are the power and logarithm tables of GF(2^8) for the
// generator 2 and the polynomial x^8+x^4+x^3+x^2+1 (0x11d).
var gfExp, gfLog = gfTables()

func gfTables() (exp [512]byte, log [256]byte) {
	x := 1
	for i := range 255 {
		exp[i] = byte(x)
		log[x] = byte(i)
		x <<= 1
		if x&0x100 != 0 {
			x ^= 0x11d
		}
	}
	for i := 255; i < len(exp); i++ {
		exp[i] = exp[i-255]
	}
	return exp, log
}

// gfMul multiplies in GF(2^8).
func gfMul(a, b byte) byte {
	if a == 0 || b == 0 {
		return 0
	}
	return gfExp[int(gfLog[a])+int(gfLog[b])]
}

// gfPow returns g^e for the generator g = 2 (e may be negative).
func gfPow(e int) byte { return gfExp[(e%255+255)%255] }

// gfInv returns the multiplicative inverse of a != 0.
func gfInv(a byte) byte { return gfExp[255-int(gfLog[a])] }

// gfMulTable returns the table of x -> c·x.
func gfMulTable(c byte) *[256]byte {
	var t [256]byte
	for x := range t {
		t[x] = gfMul(c, byte(x))
	}
	return &t
}

// mulXor sets dst[i] ^= c·src[i].
func mulXor(dst, src []byte, t *[256]byte) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] ^= t[src[i]]
	}
}

// raid56Plan says which stripes of a row a copy of data stripe target
// treats as lost and rebuilds; the stripe indexes are positions in the row
// (0..d-1 data, d P, d+1 Q).
type raid56Plan struct {
	target, other int // lost data stripes; other is -1 when only target is
	useQ          bool
}

// plan returns how copy mirror (>= 1) rebuilds data stripe target of a row
// of c.
func (c *chunk) raid56Plan(target, mirror int) raid56Plan {
	switch {
	case mirror == 1:
		return raid56Plan{target: target, other: -1}
	case mirror == 2:
		return raid56Plan{target: target, other: -1, useQ: true}
	}
	other := mirror - 3 // the k-th data stripe other than target
	if other >= target {
		other++
	}
	return raid56Plan{target: target, other: other, useQ: true}
}

// rebuildRAID56 fills p, which must not cross the end of its stripe, with
// the data at off in c as copy mirror (>= 1) rebuilds it from the rest of
// its row. A copy that needs a stripe of a missing member fails before
// reading anything.
func (fs *FS) rebuildRAID56(c *chunk, p []byte, off uint64, mirror int) error {
	L := c.stripeLen
	nr, so := off/L, off%L
	d := c.dataStripes()
	n := uint64(len(c.stripes))
	row := nr / uint64(d)
	plan := c.raid56Plan(int(nr%uint64(d)), mirror)
	at := func(j int) place {
		s := &c.stripes[(row+uint64(j))%n]
		return place{s, s.offset + row*L + so}
	}
	// The stripes the copy reads: every data stripe not lost, then P
	// unless only Q is used, then Q if used.
	var read []int
	for j := range d {
		if j != plan.target && j != plan.other {
			read = append(read, j)
		}
	}
	if !plan.useQ || plan.other >= 0 {
		read = append(read, d)
	}
	if plan.useQ {
		read = append(read, d+1)
	}
	var missing []uint64
	for _, j := range read {
		if s := at(j).s; s.dev == nil {
			missing = append(missing, s.devid)
		}
	}
	if len(missing) > 0 {
		return lostStripes(c, missing)
	}

	// pq[0] accumulates P minus the data read, pq[1] Q minus it.
	var pq [2][]byte
	tmp := make([]byte, len(p))
	for _, j := range read {
		if err := fs.readStripe(c, at(j), tmp, false); err != nil {
			return err
		}
		switch {
		case j < d:
			if !plan.useQ || plan.other >= 0 {
				pq[0] = xorAcc(pq[0], tmp, nil)
			}
			if plan.useQ {
				pq[1] = xorAcc(pq[1], tmp, gfMulTable(gfPow(j)))
			}
		case j == d:
			pq[0] = xorAcc(pq[0], tmp, nil)
		default:
			pq[1] = xorAcc(pq[1], tmp, nil)
		}
	}
	x := plan.target
	switch {
	case !plan.useQ: // D_x = P + sum of the others
		copy(p, pq[0])
	case plan.other < 0: // g^x·D_x = Q + sum of g^j·D_j
		clear(p)
		mulXor(p, pq[1], gfMulTable(gfPow(-x)))
	default:
		// With y the other lost stripe, Pxy = D_x + D_y and
		// Qxy = g^x·D_x + g^y·D_y, so D_x = (Qxy + g^y·Pxy) / (g^x + g^y).
		y := plan.other
		inv := gfInv(gfPow(x) ^ gfPow(y))
		clear(p)
		mulXor(p, pq[1], gfMulTable(inv))
		mulXor(p, pq[0], gfMulTable(gfMul(gfPow(y), inv)))
	}
	return nil
}

// xorAcc adds c·src (src itself when t is nil) to acc, allocating acc on
// first use, and returns it.
func xorAcc(acc, src []byte, t *[256]byte) []byte {
	if acc == nil {
		acc = make([]byte, len(src))
	}
	if t == nil {
		subtle.XORBytes(acc, acc, src)
	} else {
		mulXor(acc, src, t)
	}
	return acc
}

// raid56Copies is how many copies of a block a RAID5/6 chunk with d data
// stripes offers (see the comment at the top of this file).
func raid56Copies(profile uint64, d int) int {
	if profile == bgRAID6 {
		return d + 2
	}
	return 2
}
