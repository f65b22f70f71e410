// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"hash/fnv"
	"slices"
)

// tableBackend is a backend as the table builders see it: a stable id, the key
// that places it in Maglev (its address:port, identical on every LB node) and
// a weight (0 = not in the table).
type tableBackend struct {
	ID     uint32
	Key    string
	Weight int
}

// wrrSchedule is the smooth weighted round-robin sequence (as in nginx): each
// step every backend gains its weight, the richest is picked and pays the
// total. Weights are divided by their gcd so the period is as short as it can
// be; heavy backends are interleaved with light ones instead of in bursts.
func wrrSchedule(bs []tableBackend) []uint32 {
	g, total := 0, 0
	for _, b := range bs {
		if b.Weight > 0 {
			g = gcd(g, b.Weight)
		}
	}
	if g == 0 {
		return nil
	}
	w := make([]int, len(bs))
	for i, b := range bs {
		w[i] = max(b.Weight, 0) / g
		total += w[i]
	}
	cur := make([]int, len(bs))
	seq := make([]uint32, 0, total)
	for range total {
		best := -1
		for i := range bs {
			if w[i] == 0 {
				continue
			}
			cur[i] += w[i]
			if best < 0 || cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		seq = append(seq, bs[best].ID)
	}
	return seq
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// maglevIndex is the entry of a Maglev table of size entries that a flow
// hash selects: the high word of hash * size, as lb_maglev_index in
// bpf/lb_datapath.h computes it.
func maglevIndex(hash uint32, size int) int {
	return int(uint64(hash) * uint64(size) >> 32)
}

// maglevTable builds a weighted Maglev lookup table of size m (a prime): each
// backend walks its own permutation of the slots (offset, skip from two hashes
// of its key); per round every backend accrues its weight and claims its next
// free slot each time the accrued weight reaches the largest weight, so slots
// are shared in proportion to weight (Katran's Maglev V2). Backends are taken
// in key order so every LB node with the same backends builds the same table.
func maglevTable(in []tableBackend, m int) []uint32 {
	bs := make([]tableBackend, 0, len(in))
	maxW := 0
	for _, b := range in {
		if b.Weight > 0 {
			bs = append(bs, b)
			maxW = max(maxW, b.Weight)
		}
	}
	if len(bs) == 0 || m < 2 {
		return nil
	}
	slices.SortFunc(bs, func(a, b tableBackend) int {
		if a.Key < b.Key {
			return -1
		}
		if a.Key > b.Key {
			return 1
		}
		return 0
	})
	offset := make([]uint64, len(bs))
	skip := make([]uint64, len(bs))
	for i, b := range bs {
		offset[i] = keyHash(b.Key, 0x9e3779b97f4a7c15) % uint64(m)
		skip[i] = keyHash(b.Key, 0xc2b2ae3d27d4eb4f)%uint64(m-1) + 1
	}
	next := make([]uint64, len(bs))
	acc := make([]int, len(bs))
	entry := make([]int32, m)
	for i := range entry {
		entry[i] = -1
	}
	filled := 0
	for filled < m {
		for i := range bs {
			acc[i] += bs[i].Weight
			if acc[i] < maxW {
				continue
			}
			acc[i] -= maxW
			c := (offset[i] + next[i]*skip[i]) % uint64(m)
			for entry[c] >= 0 {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % uint64(m)
			}
			entry[c] = int32(i)
			next[i]++
			filled++
			if filled == m {
				break
			}
		}
	}
	out := make([]uint32, m)
	for i, e := range entry {
		out[i] = bs[e].ID
	}
	return out
}

func keyHash(key string, seed uint64) uint64 {
	h := fnv.New64a()
	var s [8]byte
	for i := range s {
		s[i] = byte(seed >> (8 * i))
	}
	h.Write(s[:])
	h.Write([]byte(key))
	x := h.Sum64()
	// fnv mixes the last bytes weakly: finish with a murmur-style avalanche
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	return x
}
