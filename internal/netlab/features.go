package netlab

import (
	"fmt"
	"os/exec"
)

// setFeatures applies spec's offload and GRO choices to link name in the calling
// thread's namespace. ethtool runs as a child of this thread, so it sees the same
// network namespace.
func setFeatures(name string, spec HostSpec) error {
	var args []string
	if !spec.Offload {
		args = append(args, "rx", "off", "tx", "off", "tso", "off", "gso", "off")
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
