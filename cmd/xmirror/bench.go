// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xmirror/xmirror/bench"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure xmirror against its alternatives in network namespaces and write a report (needs root)",
		Description: "Runs the scenarios lb, collector, source and e2e in throwaway network namespaces,\n" +
			"prints a table while it runs, and with --out writes report.md, results.json and SVG charts.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "quick", Usage: "smoke run: short trials, one repetition, fewer rates (under two minutes)"},
			&cli.StringFlag{Name: "scenarios", Value: strings.Join(bench.AllScenarios, ","), Usage: "comma-separated `LIST` of lb, collector, source, e2e"},
			&cli.StringFlag{Name: "out", Usage: "write report.md, results.json and charts to `DIR`"},
			&cli.IntFlag{Name: "reps", Usage: "repetitions per measurement, medians reported", DefaultText: "3, 1 with --quick"},
			&cli.DurationFlag{Name: "trial", Usage: "length of one trial", DefaultText: "3s, 1s with --quick"},
			&cli.IntFlag{Name: "size", Value: 100, Usage: "mirrored frame `BYTES` (64..1500; the wire adds 50 of VXLAN)"},
			&cli.IntFlag{Name: "flows", Value: 65536, Usage: "distinct flows per trial"},
			&cli.StringFlag{Name: "protocols", Value: joinProtocols(bench.DefaultProtocols), Usage: "comma-separated `LIST` of tunnels the collector scenario sends xmirror collect (of " + protocolNames() + "; vxlan is always measured)"},
			&cli.IntFlag{Name: "geneve-options", Value: 2, Usage: "options per GENEVE frame, 0..31"},
		},
		Action: runBench,
		Subcommands: []*cli.Command{
			benchGenCommand(),
			benchSinkCommand(),
		},
	}
}

func runBench(c *cli.Context) error {
	o := bench.Options{
		Quick:         c.Bool("quick"),
		Out:           c.String("out"),
		Reps:          c.Int("reps"),
		Trial:         c.Duration("trial"),
		Size:          c.Int("size"),
		Flows:         c.Int("flows"),
		GeneveOptions: c.Int("geneve-options"),
		Term:          os.Stderr,
		Command:       strings.Join(os.Args, " "),
	}
	for _, s := range strings.Split(c.String("scenarios"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.Scenarios = append(o.Scenarios, s)
		}
	}
	for _, s := range strings.Split(c.String("protocols"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			p, err := bench.ParseProtocol(s)
			if err != nil {
				return usagef("--protocols: %w", err)
			}
			o.Protocols = append(o.Protocols, p)
		}
	}
	if err := o.Validate(); err != nil {
		return usageError{fmt.Errorf("bench: %w", err)}
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := bench.Run(ctx, o); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func benchGenCommand() *cli.Command {
	return &cli.Command{
		Name:  "gen",
		Usage: "send VXLAN, GENEVE, ERSPAN or GRE frames out of an interface from an in-kernel generator (run it inside the namespace)",
		Description: "Transmits real tunnel frames (VXLAN, GENEVE with options, ERSPAN II or III, GRE bridging;\n" +
			"session ids, inner Ethernet/IPv4/TCP) of many flows with BPF_PROG_TEST_RUN live frames.\n" +
			"The receiving end of a veth needs XDP or GRO on.\n" +
			"Example: ip netns exec ns1 xmirror bench gen --iface eth0 --dst-ip 10.0.0.2 --dst-mac 02:..:02 --rate 100000 --duration 5s",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "iface", Required: true, Usage: "interface `NAME` to send from"},
			&cli.StringFlag{Name: "dst-ip", Required: true, Usage: "outer destination IPv4 `ADDR` (the LB VIP or collector)"},
			&cli.StringFlag{Name: "dst-mac", Required: true, Usage: "outer destination `MAC` (next hop)"},
			&cli.StringFlag{Name: "src-ip", Usage: "outer source IPv4 `ADDR` (default: the interface's first IPv4 address)"},
			&cli.StringFlag{Name: "src-mac", Usage: "outer source `MAC` (default: the interface's)"},
			&cli.StringFlag{Name: "protocol", Value: string(bench.VXLAN), Usage: "tunnel `NAME`: " + protocolNames()},
			&cli.IntFlag{Name: "geneve-options", Usage: "GENEVE options of 8 bytes each per frame, 0..31 (--protocol geneve)"},
			&cli.IntFlag{Name: "dst-port", Usage: "outer UDP destination `PORT` (vxlan, geneve)", DefaultText: "4789 for vxlan, 6081 for geneve"},
			&cli.Float64Flag{Name: "rate", Usage: "packets per second (0 = as fast as one core goes)"},
			&cli.DurationFlag{Name: "duration", Usage: "how long to send (0 = until --count or Ctrl-C)"},
			&cli.Uint64Flag{Name: "count", Usage: "packets to send (0 = until --duration or Ctrl-C)"},
			&cli.IntFlag{Name: "size", Value: 100, Usage: "mirrored (inner) frame `BYTES`, 64..8950; the wire adds 50"},
			&cli.IntFlag{Name: "flows", Value: 1024, Usage: "distinct inner 5-tuples and outer source ports"},
			&cli.UintFlag{Name: "vni", Aliases: []string{"id"}, Value: 1, Usage: "session id of the first flow: VNI (vxlan, geneve), ERSPAN session id (0..1023) or GRE key"},
			&cli.IntFlag{Name: "vnis", Aliases: []string{"ids"}, Value: 1, Usage: "distinct session ids, from --vni on"},
			&cli.IntFlag{Name: "cpu", Value: -1, Usage: "pin the generator to this CPU (-1 = no pinning)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
		},
		Action: runBenchGen,
	}
}

func runBenchGen(c *cli.Context) error {
	iface, err := net.InterfaceByName(c.String("iface"))
	if err != nil {
		return usagef("--iface: %w", err)
	}
	cfg := bench.GenConfig{
		Ifindex: iface.Index, Flows: c.Int("flows"), IDs: c.Int("vnis"), Rate: c.Float64("rate"),
		Count: c.Uint64("count"), Duration: c.Duration("duration"), CPU: c.Int("cpu"),
	}
	if cfg.Protocol, err = bench.ParseProtocol(c.String("protocol")); err != nil {
		return usagef("--protocol: %w", err)
	}
	cfg.Size = c.Int("size")
	cfg.ID = uint32(c.Uint("vni"))
	cfg.GeneveOptions = c.Int("geneve-options")
	if p := c.Int("dst-port"); p < 0 || p > 65535 {
		return usagef("--dst-port: %d is not a port", p)
	}
	cfg.DstPort = uint16(c.Int("dst-port"))
	if cfg.DstIP, err = netip.ParseAddr(c.String("dst-ip")); err != nil || !cfg.DstIP.Is4() {
		return usagef("--dst-ip: %q is not an IPv4 address", c.String("dst-ip"))
	}
	if cfg.DstMAC, err = net.ParseMAC(c.String("dst-mac")); err != nil {
		return usagef("--dst-mac: %w", err)
	}
	cfg.SrcMAC = iface.HardwareAddr
	if s := c.String("src-mac"); s != "" {
		if cfg.SrcMAC, err = net.ParseMAC(s); err != nil {
			return usagef("--src-mac: %w", err)
		}
	}
	if s := c.String("src-ip"); s != "" {
		if cfg.SrcIP, err = netip.ParseAddr(s); err != nil || !cfg.SrcIP.Is4() {
			return usagef("--src-ip: %q is not an IPv4 address", s)
		}
	} else if cfg.SrcIP, err = firstIPv4(iface); err != nil {
		return usagef("--src-ip: %w", err)
	}
	if c.Float64("rate") < 0 || c.Int("flows") < 1 || c.Int("vnis") < 1 {
		return usagef("--rate must be >= 0, --flows and --vnis >= 1")
	}
	if c.Uint("vni") > uint(cfg.MaxID()) {
		return usagef("--vni: %d is above %d, the most %s carries", c.Uint("vni"), cfg.MaxID(), cfg.Protocol)
	}
	if cfg.Size < bench.MinSize || cfg.Size > bench.MaxSize {
		return usagef("--size: %d is outside %d..%d", cfg.Size, bench.MinSize, bench.MaxSize)
	}
	if cfg.GeneveOptions < 0 || cfg.GeneveOptions > bench.MaxGeneveOptions || (cfg.GeneveOptions > 0 && cfg.Protocol != bench.GENEVE) {
		return usagef("--geneve-options: %d needs --protocol geneve and 0..%d", cfg.GeneveOptions, bench.MaxGeneveOptions)
	}
	if cfg.DstPort != 0 && cfg.Protocol != bench.VXLAN && cfg.Protocol != bench.GENEVE {
		return usagef("--dst-port: %s is not carried in UDP", cfg.Protocol)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.Count == 0 && cfg.Duration == 0 {
		fmt.Fprintln(os.Stderr, "sending until interrupted (Ctrl-C)")
	}
	start := time.Now()
	cfg.Progress = func(sent uint64) {
		if !c.Bool("json") {
			fmt.Fprintf(os.Stderr, "\r%6.1fs  sent %d", time.Since(start).Seconds(), sent)
		}
	}
	res, err := bench.Generate(ctx, cfg)
	if !c.Bool("json") {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(map[string]any{
			"sent": res.Sent, "runs": res.Runs, "seconds": res.Elapsed.Seconds(), "pps": res.PPS,
			"wire_bytes": cfg.WireSize(), "gbps": res.PPS * float64(cfg.WireSize()) * 8 / 1e9,
			"calls": res.Calls, "cpu_seconds": res.CPU.Seconds(),
		})
	}
	fmt.Fprintf(c.App.Writer, "sent %d frames of %d B in %.3fs: %.0f pps, %.3f Gbit/s (%d kernel calls, generator CPU %.2fs)\n",
		res.Sent, cfg.WireSize(), res.Elapsed.Seconds(), res.PPS, res.PPS*float64(cfg.WireSize())*8/1e9, res.Calls, res.CPU.Seconds())
	return nil
}

func protocolNames() string {
	return strings.Join(strings.Split(joinProtocols(bench.Protocols), ","), ", ")
}

func joinProtocols(ps []bench.Protocol) string {
	var names []string
	for _, p := range ps {
		names = append(names, string(p))
	}
	return strings.Join(names, ",")
}

func firstIPv4(iface *net.Interface) (netip.Addr, error) {
	addrs, err := iface.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", iface.Name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() {
				return ip.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("%s has no IPv4 address; give --src-ip", iface.Name)
}

func benchSinkCommand() *cli.Command {
	return &cli.Command{
		Name:      "sink",
		Usage:     "count UDP datagrams with recvmmsg loops (the collector ceiling); prints JSON when stopped",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "0.0.0.0:4789", Usage: "UDP `ADDR` to receive on"},
			&cli.IntFlag{Name: "rcvbuf", Value: bench.DefaultSinkBuffer, Usage: "socket receive buffer `BYTES`"},
			&cli.IntFlag{Name: "readers", Value: runtime.NumCPU(), Usage: "SO_REUSEPORT sockets, one goroutine each", DefaultText: "one per CPU"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after `D` (0 = on SIGTERM or Ctrl-C)"},
		},
		Action: func(c *cli.Context) error {
			s, err := bench.ListenSink(c.String("listen"), c.Int("readers"), c.Int("rcvbuf"))
			if err != nil {
				return err
			}
			defer s.Close()
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if d := c.Duration("duration"); d > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			fmt.Fprintf(os.Stderr, "sink listening on %s\n", s.Addr())
			start := time.Now()
			if err := s.Run(ctx); err != nil {
				return err
			}
			n := s.Counts()
			return json.NewEncoder(c.App.Writer).Encode(bench.SinkReport{Packets: n.Packets, Bytes: n.Bytes, Seconds: time.Since(start).Seconds()})
		},
	}
}
