// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Iperf runs iperf3 between two hosts of a lab: the one home of the iperf3
// ends for the benchmarks (bench) and the source's tests.
type Iperf struct {
	Server, Client *Host
	Addr           string // the server's address, bound and connected to
	// ServerCPU and ClientCPU pin the ends (iperf3 -A); "" leaves them to
	// the scheduler.
	ServerCPU, ClientCPU string
}

// IperfReport is what one iperf3 run (-J) reports.
type IperfReport struct {
	BitsPerSecond float64 // received
	Retransmits   int     // by the sender
}

// Serve starts a one-off server (-s -1) and waits until it listens; the
// caller stops it.
func (ip Iperf) Serve() (*Proc, error) {
	args := []string{"-s", "-1", "-B", ip.Addr}
	if ip.ServerCPU != "" {
		args = append(args, "-A", ip.ServerCPU)
	}
	p, err := ip.Server.Start("iperf3", args...)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := ip.Server.Run("ss", "-Hltn", "src", ip.Addr, "sport", "= :5201")
		if err == nil && out != "" {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("iperf3 server in %s did not listen within 5s: %s", ip.Server.Name, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ClientArgs are the client's arguments: -c the server, args, its CPU and,
// for reverse (the server sends), -R.
func (ip Iperf) ClientArgs(reverse bool, args ...string) []string {
	out := append([]string{"-c", ip.Addr}, args...)
	if ip.ClientCPU != "" {
		out = append(out, "-A", ip.ClientCPU)
	}
	if reverse {
		out = append(out, "-R")
	}
	return out
}

// Run runs one test to its end (server, then the client with -J and args)
// and returns its report.
func (ip Iperf) Run(ctx context.Context, reverse bool, args ...string) (IperfReport, error) {
	server, err := ip.Serve()
	if err != nil {
		return IperfReport{}, err
	}
	defer server.Stop()
	out, err := ip.Client.Command(ctx, "iperf3", ip.ClientArgs(reverse, append(args, "-J")...)...).Output()
	if err != nil {
		return IperfReport{}, fmt.Errorf("iperf3 client: %w: %s", err, out)
	}
	return ParseIperf(out)
}

// ParseIperf reads the report of `iperf3 -J`.
func ParseIperf(out []byte) (IperfReport, error) {
	var rep struct {
		End struct {
			SumSent     struct{ Retransmits int } `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return IperfReport{}, fmt.Errorf("iperf3 output: %w", err)
	}
	if rep.Error != "" {
		return IperfReport{}, errors.New("iperf3: " + rep.Error)
	}
	return IperfReport{BitsPerSecond: rep.End.SumReceived.BitsPerSecond, Retransmits: rep.End.SumSent.Retransmits}, nil
}

// Mirred is the kernel's own mirror, the alternative xmirror source is
// measured against: tc mirred copies the packets of an interface, both
// directions, to a VXLAN device.
type Mirred struct {
	Iface  string // the mirrored interface
	Device string // the VXLAN device to create
	Remote string // the target
	Local  string // the outer source address ("" = the kernel's choice)
	MTU    int    // of the device (0 = the kernel's default)
	// TCPOnly mirrors IPv4 TCP only; else every packet, except the
	// device's own VXLAN on egress (which would be mirrored forever).
	TCPOnly bool
}

// Setup creates the device and the filters in h; undo removes both, also
// after a failed Setup.
func (m Mirred) Setup(h *Host) (undo func(), err error) {
	undo = func() {
		h.Run("tc", "qdisc", "del", "dev", m.Iface, "clsact")
		h.Run("ip", "link", "del", m.Device)
	}
	dev := []string{"ip", "link", "add", m.Device}
	if m.MTU > 0 {
		dev = append(dev, "mtu", strconv.Itoa(m.MTU))
	}
	dev = append(dev, "type", "vxlan", "id", "1", "remote", m.Remote, "dstport", "4789", "nolearning")
	if m.Local != "" {
		dev = append(dev, "local", m.Local)
	} else {
		dev = append(dev, "dev", m.Iface)
	}
	mirror := []string{"action", "mirred", "egress", "mirror", "dev", m.Device}
	// tc has no matchall classifier here: u32 matching 0 against 0 matches
	// every packet.
	match := []string{"prio", "2", "u32", "match", "u32", "0", "0"}
	if m.TCPOnly {
		match = []string{"prio", "2", "protocol", "ip", "u32", "match", "ip", "protocol", "6", "0xff"}
	}
	cmds := [][]string{
		dev,
		{"ip", "link", "set", m.Device, "up"},
		{"tc", "qdisc", "add", "dev", m.Iface, "clsact"},
		append(append([]string{"tc", "filter", "add", "dev", m.Iface, "ingress"}, match...), mirror...),
	}
	if !m.TCPOnly {
		// A u32 match without actions ends classification with "ok"
		// (the gact module is not available here).
		cmds = append(cmds, []string{"tc", "filter", "add", "dev", m.Iface, "egress", "prio", "1", "u32",
			"match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", "4789", "0xffff", "flowid", "1:1"})
	}
	cmds = append(cmds, append(append([]string{"tc", "filter", "add", "dev", m.Iface, "egress"}, match...), mirror...))
	for _, c := range cmds {
		if _, err := h.Run(c[0], c[1:]...); err != nil {
			return undo, err
		}
	}
	return undo, nil
}
