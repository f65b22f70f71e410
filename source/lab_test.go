// SPDX-License-Identifier: Apache-2.0

package source

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// The seed's addresses.
const (
	sourceIP = "192.168.0.230"
	testIP   = "192.168.0.161"
	targetIP = "192.168.0.147"
)

// seedYAML is the seed's filter and session, targeting the lab's target host.
const seedYAML = `
filters:
  - name: mirror-filter-01
    inbound:
      - {priority: 1, action: accept, protocol: tcp, ethertype: ipv4,
         source: 192.168.0.161/32, source_ports: all,
         destination: 192.168.0.230/32, destination_ports: 1234-1234}
    outbound:
      - {priority: 1, action: accept, protocol: tcp, ethertype: ipv4,
         source: 192.168.0.230/32, source_ports: 1234-1234,
         destination: 192.168.0.161/32, destination_ports: all}
sessions:
  - {name: mirror-session-01, priority: 1, vni: 1, packet_length: 96, enabled: true,
     filter: mirror-filter-01, sources: [eth0], target: 192.168.0.147}
metrics: {listen: "off"}
`

func seedConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	return cfg
}

// seedLab is the seed's topology: source, test and target on one subnet.
func seedLab(t *testing.T, offload bool) *netlab.Lab {
	return labtest.ForTest(t,
		netlab.HostSpec{Name: "source", Addrs: []string{sourceIP + "/24"}, Offload: offload},
		netlab.HostSpec{Name: "test", Addrs: []string{testIP + "/24"}, Offload: offload},
		netlab.HostSpec{Name: "target", Addrs: []string{targetIP + "/24"}, Offload: offload},
	)
}

// bulk sends n bytes from source:1234 to test in one burst: with offload on,
// the stack builds GSO packets larger than the MTU.
func bulk(t *testing.T, src, test *netlab.Host, n int) {
	t.Helper()
	defer serveOnce(t, src, sourceIP+":1234", make([]byte, n)).Close()
	inNS(t, test, func() error {
		c, err := net.DialTimeout("tcp4", sourceIP+":1234", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.Copy(io.Discard, c)
		if err != nil || got != int64(n) {
			return fmt.Errorf("bulk read %d of %d bytes: %v", got, n, err)
		}
		return nil
	})
}

// serveOnce listens on addr in h, and writes payload to the first
// connection and closes it. The caller closes the listener.
func serveOnce(t *testing.T, h *netlab.Host, addr string, payload []byte) net.Listener {
	t.Helper()
	var ln net.Listener
	inNS(t, h, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write(payload)
		c.Close()
	}()
	return ln
}

// startSource runs New inside the host's namespace and closes it at cleanup.
func startSource(t *testing.T, h *netlab.Host, cfg *config.Config) *Source {
	t.Helper()
	return startSourceOpts(t, h, cfg, Options{})
}

func startSourceOpts(t *testing.T, h *netlab.Host, cfg *config.Config, opts Options) *Source {
	t.Helper()
	var src *Source
	if err := h.Do(func() (err error) {
		src, err = New(cfg, opts)
		return err
	}); err != nil {
		t.Fatalf("start source: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Do(src.Close); err != nil {
			t.Errorf("close source: %v", err)
		}
	})
	return src
}

// capture is a tcpdump writing a pcap file in a host's namespace.
type capture struct {
	dump *netlab.Tcpdump
	path string
}

// startCapture starts tcpdump on h's interface, writing name.pcap. Give
// bursts a snap length of their size (-s): at tcpdump's default of 256
// KiB its capture ring holds 64 packets, and a burst of more loses some
// ("dropped by kernel").
func startCapture(t *testing.T, h *netlab.Host, name string, args ...string) *capture {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".pcap")
	full := append([]string{"-i", h.Iface, "-n", "-U", "--immediate-mode", "-B", "16384", "-w", path}, args...)
	dump, err := h.StartTcpdump(context.Background(), full...)
	if err != nil {
		t.Fatalf("tcpdump in %s: %v", h.Name, err)
	}
	return &capture{dump: dump, path: path}
}

// packets stops the capture and returns its packets.
func (c *capture) packets(t *testing.T) []gopacket.Packet {
	t.Helper()
	time.Sleep(200 * time.Millisecond) // let the last packets reach the capture
	c.dump.Stop()
	f, err := os.Open(c.path)
	if err != nil {
		t.Fatalf("open capture: %v", err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("read capture %s: %v (tcpdump: %s)", c.path, err, c.dump.Output())
	}
	var out []gopacket.Packet
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		p.Metadata().CaptureInfo = ci
		out = append(out, p)
	}
	return out
}

// decap returns VNI and inner frame of a captured VXLAN packet.
func decap(t *testing.T, p gopacket.Packet) (vni uint32, inner []byte, outer *layers.IPv4, udp *layers.UDP) {
	t.Helper()
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if ip == nil || u == nil || u.DstPort != 4789 {
		t.Fatalf("not VXLAN: %v", p)
	}
	payload := u.Payload
	if len(payload) < 8 || payload[0] != 0x08 {
		t.Fatalf("bad VXLAN header % x", payload)
	}
	vni = uint32(payload[4])<<16 | uint32(payload[5])<<8 | uint32(payload[6])
	return vni, payload[8:], ip, u
}

// inNS runs fn in the host's namespace and fails the test on error.
func inNS(t *testing.T, h *netlab.Host, fn func() error) {
	t.Helper()
	if err := h.Do(fn); err != nil {
		t.Fatalf("in %s: %v", h.Name, err)
	}
}

// seedConversation is the seed's nc session: a connection from test to
// source:1234, data both ways, then a clean close. Returns what each side read.
func seedConversation(t *testing.T, src, test *netlab.Host) (atSource, atTest string) {
	t.Helper()
	var ln net.Listener
	inNS(t, src, func() (err error) {
		ln, err = net.Listen("tcp4", sourceIP+":1234")
		return err
	})
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	var cl net.Conn
	inNS(t, test, func() (err error) {
		cl, err = net.DialTimeout("tcp4", sourceIP+":1234", 5*time.Second)
		return err
	})
	defer cl.Close()
	sc, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer sc.Close()
	read := func(c net.Conn, n int) string {
		buf := make([]byte, n)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := 0
		for got < n {
			k, err := c.Read(buf[got:])
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			got += k
		}
		return string(buf)
	}
	for _, step := range []struct {
		from, to net.Conn
		msg      string
	}{
		{sc, cl, "hello\n"},
		{sc, cl, "source to test\n"},
		{cl, sc, "test to source\n"},
	} {
		if _, err := step.from.Write([]byte(step.msg)); err != nil {
			t.Fatalf("write: %v", err)
		}
		got := read(step.to, len(step.msg))
		if step.to == sc {
			atSource += got
		} else {
			atTest += got
		}
		time.Sleep(20 * time.Millisecond) // separate segments, as typed into nc
	}
	cl.Close()
	sc.Close()
	time.Sleep(50 * time.Millisecond)
	return atSource, atTest
}

// noise is traffic the seed's filter must not mirror: another TCP port, UDP
// to port 1234, ICMP.
func noise(t *testing.T, src, test *netlab.Host) {
	t.Helper()
	defer serveOnce(t, src, sourceIP+":5678", []byte("other port\n")).Close()
	inNS(t, test, func() error {
		c, err := net.DialTimeout("tcp4", sourceIP+":5678", 5*time.Second)
		if err != nil {
			return err
		}
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(buf)
		c.Close()
		u, err := net.Dial("udp4", sourceIP+":1234")
		if err != nil {
			return err
		}
		defer u.Close()
		_, err = u.Write([]byte("udp to 1234"))
		return err
	})
	if out, err := test.Run("ping", "-c", "2", "-i", "0.2", "-W", "1", sourceIP); err != nil {
		t.Fatalf("ping: %v %s", err, out)
	}
}

func describe(data []byte) string {
	return fmt.Sprint(gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default))
}

func gopacketDecode(frame []byte) gopacket.Packet {
	return gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
}

// sinkVXLAN binds UDP 4789 on the target so that it does not answer the
// mirrored packets with ICMP port unreachable (which a filter accepting ICMP
// would mirror in turn).
func sinkVXLAN(t *testing.T, target *netlab.Host) {
	t.Helper()
	var c net.PacketConn
	inNS(t, target, func() (err error) {
		c, err = net.ListenPacket("udp4", ":4789")
		return err
	})
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
}

type configT = config.Config

var parseConfig = config.Parse
