// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestMaglevTableTooSmallWarns: maglev_table_size 251 is valid (a prime
// above the number of backends), but with four backends of weight 100 and
// sixty of weight 1 the weighted Maglev table gives the light ones no
// entry: they got no flows while `lb status` showed them healthy with
// weight 1, and nothing said why. The load balancer now warns, naming
// them; a table large enough for the weights draws no warning.
func TestMaglevTableTooSmallWarns(t *testing.T) {
	labtest.RequireRoot(t)
	cfg := func(size int) *config.LoadBalancer {
		lb := &config.LoadBalancer{Listener: config.Listener{VIP: netip.MustParseAddr("10.0.0.1"), Port: 4789},
			Algorithm: "maglev", MaglevSize: size}
		for i := range 64 {
			w := 1
			if i < 4 {
				w = 100
			}
			lb.Backends = append(lb.Backends, config.Backend{Name: fmt.Sprintf("c%d", i),
				Address: netip.AddrFrom4([4]byte{10, 1, byte(i), 1}), Port: 4789, Weight: w})
		}
		return lb
	}
	for _, c := range []struct {
		size int
		warn bool
	}{{251, true}, {65537, false}} {
		t.Run(fmt.Sprint(c.size), func(t *testing.T) {
			var buf netlab.SyncBuffer
			prev := slog.Default()
			slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
			defer slog.SetDefault(prev)
			bal, err := New(Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer bal.Close()
			if err := bal.Apply(cfg(c.size)); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if warned := strings.Contains(out, "maglev_table_size is too small") && strings.Contains(out, "c63"); warned != c.warn {
				t.Errorf("size %d: warned %v, want %v\n%s", c.size, warned, c.warn, out)
			}
		})
	}
}
