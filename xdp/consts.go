package xdp

// Limits and codes shared with the BPF program.
// keep in sync with bpf/lb_consts.h
const (
	MaxBackends = 64
	wrrMax      = 8192
	// MaglevMax is the largest Maglev table the maps hold.
	MaglevMax = 131071
	// DefaultMaglevSize is the prime table size used when the config says none.
	DefaultMaglevSize = 65537
	slots             = 2

	algoWRR    = 0
	algoMaglev = 1

	affInnerSymmetric = 0
	affOuter          = 1
	affNone           = 2

	aclAll       = 0
	aclAllowlist = 1

	backendAlive = 0x1

	hashSeed     = 0x6d697272
	hashSeedFrag = 0x66726167
)

// Stat is a verdict reason counted in the lb_stats per-CPU array.
// keep in sync with enum lb_stat in bpf/lb_consts.h
type Stat uint32

const (
	StatTX Stat = iota
	StatRedirect
	StatPassNotListener
	StatPassNoNeigh
	StatDropACL
	StatDropNoBackend
	StatDropNoRoute
	StatDropMalformed
	StatFragment
	StatCTHit
	StatCTMiss
	StatHashFallback
	StatPassMTU
	statMax
)

// statNames are the metric label values of each Stat.
var statNames = [statMax]string{
	StatTX:              "tx",
	StatRedirect:        "redirect",
	StatPassNotListener: "pass_not_listener",
	StatPassNoNeigh:     "pass_no_neigh",
	StatDropACL:         "drop_acl",
	StatDropNoBackend:   "drop_no_backend",
	StatDropNoRoute:     "drop_no_route",
	StatDropMalformed:   "drop_malformed",
	StatFragment:        "fragment",
	StatCTHit:           "conntrack_hit",
	StatCTMiss:          "conntrack_miss",
	StatHashFallback:    "hash_fallback",
	StatPassMTU:         "pass_mtu",
}

// Stats lists every verdict reason in counter order.
func Stats() []Stat {
	out := make([]Stat, statMax)
	for i := range out {
		out[i] = Stat(i)
	}
	return out
}

func (s Stat) String() string {
	if s < statMax {
		return statNames[s]
	}
	return "unknown"
}
