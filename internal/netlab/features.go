// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"fmt"
	"os/exec"
)

// setFeatures applies spec's offload and GRO choices to link name in the calling
// thread's namespace. ethtool runs as a child of this thread, so it sees the same
// network namespace. On a bridge port (port) UDP segmentation is always off: a
// UDP GSO packet a host sends leaves the bridge toward the other hosts as the
// packets a wire would carry (a veth would hand the aggregate over whole).
func setFeatures(name string, spec HostSpec, port bool) error {
	var args []string
	if !spec.Offload {
		args = append(args, "rx", "off", "tx", "off", "tso", "off", "gso", "off")
	} else if port {
		args = append(args, "tx-udp-segmentation", "off")
	}
	if spec.GRO {
		args = append(args, "gro", "on")
	}
	if len(args) == 0 {
		return nil
	}
	out, err := exec.Command("ethtool", append([]string{"-K", name}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ethtool -K %s: %w: %s", name, err, out)
	}
	return nil
}
