// SPDX-License-Identifier: Apache-2.0

package xdp

import "github.com/xmirror/xmirror/config"

// Limits of the BPF program's maps (#defines in bpf/lb_consts.h; BTF does not
// carry them): TestContract checks each against the map it sizes.
const (
	MaxBackends = config.MaxBackends
	wrrMax      = 8192
	// aclMax is the allowlist entries of one slot (LB_ACL_MAX).
	aclMax = config.MaxAllowlist
	// MaglevMax is the largest Maglev table the maps hold.
	MaglevMax = config.MaxMaglevSize
	// maglevLine is the Maglev entries per lb_maglev value; maglevLines the
	// values of one slot.
	maglevLine  = 64
	maglevLines = (MaglevMax + maglevLine - 1) / maglevLine
	// DefaultMaglevSize is the prime table size used when the config says none.
	DefaultMaglevSize = 65537
	slots             = 2
	ifaceSlots        = 64
	// fragsMax is how many outer datagrams' first fragments lb_frags
	// remembers.
	fragsMax = 8192
)

// Codes shared with the BPF program, from the enums of bpf/lb_consts.h that
// bpf2go generates (see gen.go).
const (
	algoWRR    = uint8(lbLbAlgoLB_ALGO_WRR)
	algoMaglev = uint8(lbLbAlgoLB_ALGO_MAGLEV)

	affInnerSymmetric = uint8(lbLbAffinityLB_AFF_INNER_SYMMETRIC)
	affOuter          = uint8(lbLbAffinityLB_AFF_OUTER)
	affNone           = uint8(lbLbAffinityLB_AFF_NONE)

	encapVXLAN  = uint8(lbLbEncapLB_ENCAP_VXLAN)
	encapGENEVE = uint8(lbLbEncapLB_ENCAP_GENEVE)
	encapGRE    = uint8(lbLbEncapLB_ENCAP_GRE)

	aclAll       = uint8(lbLbAclModeLB_ACL_ALL)
	aclAllowlist = uint8(lbLbAclModeLB_ACL_ALLOWLIST)

	backendAlive   = uint8(lbLbBackendFlagLB_BACKEND_ALIVE)
	backendFailing = uint8(lbLbBackendFlagLB_BACKEND_FAILING)
	backendPending = uint8(lbLbBackendFlagLB_BACKEND_PENDING)

	hashSeed     = uint32(lbLbHashSeedLB_HASH_SEED)
	hashSeedFrag = uint32(lbLbHashSeedLB_HASH_SEED_FRAG)
)

// Stat is an index of the per-CPU counters (enum lb_stat): a verdict (the
// packet's fate, exactly one per packet) or an event (any number per packet).
type Stat uint32

// Verdicts.
const (
	StatTX              = Stat(lbLbStatLB_STAT_TX)
	StatRedirect        = Stat(lbLbStatLB_STAT_REDIRECT)
	StatPassNotListener = Stat(lbLbStatLB_STAT_PASS_NOT_LISTENER)
	StatPassNoNeigh     = Stat(lbLbStatLB_STAT_PASS_NO_NEIGH)
	StatPassMTU         = Stat(lbLbStatLB_STAT_PASS_MTU)
	StatPassVLAN        = Stat(lbLbStatLB_STAT_PASS_VLAN)
	StatPassOtherHost   = Stat(lbLbStatLB_STAT_PASS_OTHER_HOST)
	StatDropACL         = Stat(lbLbStatLB_STAT_DROP_ACL)
	StatDropNoBackend   = Stat(lbLbStatLB_STAT_DROP_NO_BACKEND)
	StatDropNoRoute     = Stat(lbLbStatLB_STAT_DROP_NO_ROUTE)
	StatDropMalformed   = Stat(lbLbStatLB_STAT_DROP_MALFORMED)
	StatDropTTL         = Stat(lbLbStatLB_STAT_DROP_TTL)
	statVerdicts        = Stat(lbLbStatLB_STAT_VERDICTS)
)

// Events.
const (
	StatFragment     = Stat(lbLbStatLB_STAT_FRAGMENT)
	StatCTHit        = Stat(lbLbStatLB_STAT_CT_HIT)
	StatCTMiss       = Stat(lbLbStatLB_STAT_CT_MISS)
	StatHashFallback = Stat(lbLbStatLB_STAT_HASH_FALLBACK)
	statMax          = Stat(lbLbStatLB_STAT_MAX)
)

// statNames are the metric label values of each Stat; an entry left empty
// when the enum grows fails TestContract.
var statNames = [statMax]string{
	StatTX:              "tx",
	StatRedirect:        "redirect",
	StatPassNotListener: "pass_not_listener",
	StatPassNoNeigh:     "pass_no_neigh",
	StatPassMTU:         "pass_mtu",
	StatPassVLAN:        "pass_vlan",
	StatPassOtherHost:   "pass_other_host",
	StatDropACL:         "drop_acl",
	StatDropNoBackend:   "drop_no_backend",
	StatDropNoRoute:     "drop_no_route",
	StatDropMalformed:   "drop_malformed",
	StatDropTTL:         "drop_ttl",
	StatFragment:        "fragment",
	StatCTHit:           "conntrack_hit",
	StatCTMiss:          "conntrack_miss",
	StatHashFallback:    "hash_fallback",
}

// Verdict reports whether s is a packet's fate (counted once per packet)
// rather than an event.
func (s Stat) Verdict() bool { return s < statVerdicts }

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
