// SPDX-License-Identifier: Apache-2.0

package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xmirror/xmirror/config"
)

// TestStopWithdrawsAnAnnouncementInFlight: a SIGTERM just as the node
// became ready (the announcement being made) withdraws and drains like any
// other. Stop looked at whether the VIP was announced before the
// announcement in flight had finished, so it skipped the withdrawal and
// the drain: the sessions closed at once, and with --detach-on-exit the
// program went while routers still sent to the node.
func TestStopWithdrawsAnAnnouncementInFlight(t *testing.T) {
	cfg := config.BGP{ASN: 65001, RouterID: netip.MustParseAddr("10.0.0.1")}
	for i := range 200 {
		s, err := Start(cfg, netip.MustParseAddr("10.99.0.1"), nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Announce(true)
		// SIGTERM at some point of the announcement
		time.Sleep(time.Duration(i%40) * 5 * time.Microsecond)
		s.Stop()
		if st := s.Status(); st.Announces != st.Withdrawals {
			t.Fatalf("round %d: stopped with %d announcements and %d withdrawals: the VIP was not withdrawn before the sessions closed", i, st.Announces, st.Withdrawals)
		}
	}
}
