// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// enableForwarding turns on IPv4 forwarding on a listener interface (in the
// caller's network namespace). bpf_fib_lookup refuses to route packets that
// arrive on an interface without forwarding, and packets whose next hop is not
// resolved yet take the kernel's forwarding path.
func enableForwarding(iface string) error {
	p := "/proc/sys/net/ipv4/conf/" + iface + "/forwarding"
	cur, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	if strings.TrimSpace(string(cur)) == "1" {
		return nil
	}
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enable forwarding on %s: %w (set net.ipv4.conf.%s.forwarding=1 beforehand, on the host for a container, whose /proc/sys is read-only: bpf_fib_lookup needs it)", iface, err, iface)
	}
	slog.Info("enabled IPv4 forwarding on listener interface (needed by bpf_fib_lookup)", "interface", iface)
	return nil
}
