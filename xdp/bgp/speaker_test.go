// SPDX-License-Identifier: Apache-2.0

package bgp

import (
	"net/netip"
	"testing"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/xmirror/xmirror/config"
)

// TestPath: the announcement is the VIP/32, origin IGP, next hop left to
// GoBGP (0.0.0.0: the session's local address), the MED and the communities.
func TestPath(t *testing.T) {
	s := &Speaker{vip: netip.MustParseAddr("10.99.0.1"),
		cfg: config.BGP{MED: 7, Communities: []string{"65001:100", "0:65535"}}}
	p, err := s.path()
	if err != nil {
		t.Fatal(err)
	}
	var nlri api.IPAddressPrefix
	if err := p.Nlri.UnmarshalTo(&nlri); err != nil || nlri.Prefix != "10.99.0.1" || nlri.PrefixLen != 32 {
		t.Fatalf("nlri %v (%v), want 10.99.0.1/32", &nlri, err)
	}
	var (
		origin api.OriginAttribute
		nh     api.NextHopAttribute
		med    api.MultiExitDiscAttribute
		cs     api.CommunitiesAttribute
	)
	found := map[string]bool{}
	for _, a := range p.Pattrs {
		switch {
		case a.UnmarshalTo(&origin) == nil:
			found["origin"] = origin.Origin == 0
		case a.UnmarshalTo(&nh) == nil:
			found["nexthop"] = nh.NextHop == "0.0.0.0"
		case a.UnmarshalTo(&med) == nil:
			found["med"] = med.Med == 7
		case a.UnmarshalTo(&cs) == nil:
			found["communities"] = len(cs.Communities) == 2 && cs.Communities[0] == 65001<<16|100 && cs.Communities[1] == 65535
		}
	}
	for _, k := range []string{"origin", "nexthop", "med", "communities"} {
		if !found[k] {
			t.Errorf("attribute %s missing or wrong (%v)", k, found)
		}
	}
}

func TestCommunities(t *testing.T) {
	if _, err := communities([]string{"1:70000"}); err == nil {
		t.Error("1:70000 accepted")
	}
	got, err := communities([]string{"65535:0"})
	if err != nil || got[0] != 65535<<16 {
		t.Errorf("65535:0 -> %v, %v", got, err)
	}
}
