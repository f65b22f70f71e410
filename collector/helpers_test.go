// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/xmirror/xmirror/internal/netlab"
)

var (
	macSource = net.HardwareAddr{0xfa, 0x16, 0x3e, 0x7e, 0xd6, 0xbc} // ECS-source
	macTest   = net.HardwareAddr{0xfa, 0x16, 0x3e, 0x7e, 0xd6, 0x77} // ECS-test
	ipSource  = net.IPv4(192, 168, 0, 230).To4()
	ipTest    = net.IPv4(192, 168, 0, 161).To4()
)

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// tcpFrame builds an Ethernet/IPv4/TCP frame with payload.
func tcpFrame(tb testing.TB, src, dst net.IP, sport, dport uint16, seq, ack uint32, payload []byte) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: macSource, DstMAC: macTest, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, ACK: true, PSH: len(payload) > 0, Window: 510}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(tb, eth, ip, tcp, gopacket.Payload(payload))
}

// vxlan wraps an inner frame in a VXLAN header (what the UDP payload is).
func vxlan(vni uint32, inner []byte) []byte {
	h := []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
	return append(h, inner...)
}

// testCollector runs an in-process collector on a free loopback port.
func testCollector(t *testing.T, opts Options) (*Collector, func()) {
	t.Helper()
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.OutputDir == "" {
		opts.OutputDir = t.TempDir()
	}
	c, err := New(withTestDefaults(opts))
	if err != nil {
		t.Fatalf("new collector: %v", err)
	}
	return c, runCollector(t, c)
}

// withTestDefaults is opts with the file names the tests expect and a
// logger that is quiet unless the tests run with -v.
func withTestDefaults(opts Options) Options {
	if opts.FileName == "" {
		opts.FileName = "{session}-{time}" // TestFileNameTemplate checks the default
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if testing.Verbose() {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	return opts
}

// runCollector runs c until the returned stop is called (or the test ends)
// and fails the test if Run returns an error.
func runCollector(t *testing.T, c *Collector) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// runCollectorIn makes a collector of opts (test defaults filled in) in h's
// network namespace and runs it as runCollector does.
func runCollectorIn(t *testing.T, h *netlab.Host, opts Options) (*Collector, func(), error) {
	var (
		c    *Collector
		stop func()
	)
	err := h.Do(func() error {
		var err error
		if c, err = New(withTestDefaults(opts)); err != nil {
			return err
		}
		stop = runCollector(t, c)
		return nil
	})
	return c, stop, err
}

// send sends each payload as one datagram from a socket bound to from.
func send(t *testing.T, from string, to *net.UDPAddr, payloads ...[]byte) {
	t.Helper()
	conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)}, to)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	for _, p := range payloads {
		if _, err := conn.Write(p); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
}

// waitReceived waits until the collector has read n datagrams and its
// writers have written what they were handed.
func waitReceived(t *testing.T, c *Collector, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Received < n || !c.handoffIdle() {
		if time.Now().After(deadline) {
			t.Fatalf("collector received %d of %d datagrams", c.Stats().Received, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type readPacket struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// readCapture reads a pcap or pcapng file with pcapgo.
func readCapture(t *testing.T, path string) ([]readPacket, []pcapgo.NgInterface) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []readPacket
	if strings.HasSuffix(strings.TrimSuffix(path, ".part"), ".pcap") {
		r, err := pcapgo.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("pcap %s: %v", path, err)
		}
		if r.LinkType() != layers.LinkTypeEthernet {
			t.Errorf("%s: link type %v", path, r.LinkType())
		}
		for {
			data, ci, err := r.ReadPacketData()
			if err == io.EOF {
				return out, nil
			}
			if err != nil {
				t.Fatalf("pcap %s: %v", path, err)
			}
			out = append(out, readPacket{ci, data})
		}
	}
	r, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.NgReaderOptions{})
	if err == io.EOF && validPrefix(raw, FormatPcapng) == len(raw) {
		// pcapgo wants an interface block; a section header alone is a
		// valid capture with no packets (tshark reads it).
		return nil, nil
	}
	if err != nil {
		t.Fatalf("pcapng %s: %v", path, err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("pcapng %s: %v", path, err)
		}
		out = append(out, readPacket{ci, data})
	}
	var ifs []pcapgo.NgInterface
	for i := 0; i < r.NInterfaces(); i++ {
		ifc, _ := r.Interface(i)
		ifs = append(ifs, ifc)
	}
	return out, ifs
}

// tsharkFields runs tshark -r on a file and returns one line per packet.
func tsharkFields(t *testing.T, path string, fields ...string) []string {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed (make deps)")
	}
	args := []string{"-r", path, "-n", "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command("tshark", args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user profile
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || strings.Contains(stderr.String(), "appears to have been cut short") {
		t.Fatalf("tshark -r %s: %v: %s", path, err, stderr.String())
	}
	s := strings.TrimRight(string(out), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// onlyFile is the path of the one file under dir, whose name relative to
// dir must start with prefix; the test fails if there is any other file.
func onlyFile(t *testing.T, dir, prefix string) string {
	t.Helper()
	got := files(t, dir)
	if len(got) != 1 || !strings.HasPrefix(got[0], prefix) {
		t.Fatalf("files %v", got)
	}
	return filepath.Join(dir, got[0])
}

// files lists the capture files (closed and temporary) under dir, sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

var loopback = netip.MustParseAddr("127.0.0.1")

func textLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func execOutput(name string, args ...string) (string, error) {
	if _, err := exec.LookPath(name); err != nil {
		return "", err
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// vxlanFrame is an inner frame as the VXLAN decapsulation hands it on.
func vxlanFrame(vni uint32, inner []byte) Frame {
	return Frame{Key: VXLAN(vni), Inner: inner, OrigLen: len(inner)}
}
