// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"net"
	"testing"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// colLab is a sender and a collector host on one bridge, for collectors that
// receive with XDP on a real interface (the collector's eth0, a veth).
// Traffic and HTTP requests of the test leave from the sender's namespace.
type colLab struct {
	sender, col *netlab.Host
}

const (
	labSenderAddr  = "10.77.0.1"
	labSenderAddr2 = "10.77.0.3"
	labColAddr     = "10.77.0.2"
)

// collectEnv is where a test runs its collector: with sockets on loopback
// (lab nil), or on the collector host of a lab with the receive path named
// (ReceiveXDP: the XDP program on the host's eth0, a veth in native mode).
type collectEnv struct {
	lab     *colLab
	receive string
}

// bothPaths runs a test against the socket path and the XDP path.
func bothPaths(t *testing.T, fn func(t *testing.T, env collectEnv)) {
	t.Run(ReceiveSocket, func(t *testing.T) { fn(t, collectEnv{}) })
	t.Run(ReceiveXDP, func(t *testing.T) { fn(t, collectEnv{lab: newColLab(t, 0), receive: ReceiveXDP}) })
}

// sources are two addresses the test can send from.
func (env collectEnv) sources() [2]string {
	if env.lab == nil {
		return [2]string{"127.0.0.1", "127.0.0.2"}
	}
	return [2]string{labSenderAddr, labSenderAddr2}
}

// collector runs an in-process collector in the environment (see
// testCollector); in a lab it listens on the collector host's address.
func (env collectEnv) collector(t *testing.T, opts Options) (*Collector, func()) {
	t.Helper()
	if env.lab == nil {
		return testCollector(t, opts)
	}
	opts.Listen, opts.Receive = labColAddr+":4789", env.receive
	var (
		c    *Collector
		stop func()
	)
	err := env.lab.col.Do(func() error {
		c, stop = testCollector(t, opts)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Receive() != env.receive {
		t.Fatalf("collector receives with %s, want %s", c.Receive(), env.receive)
	}
	return c, stop
}

// send sends each payload as one datagram from the address from.
func (env collectEnv) send(t *testing.T, from string, to *net.UDPAddr, payloads ...[]byte) {
	t.Helper()
	if env.lab == nil {
		send(t, from, to, payloads...)
		return
	}
	err := env.lab.sender.Do(func() error {
		send(t, from, to, payloads...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func newColLab(t *testing.T, mtu int) *colLab {
	t.Helper()
	l := labtest.ForTest(t,
		netlab.HostSpec{Name: "sender", Addrs: []string{labSenderAddr + "/24", labSenderAddr2 + "/24"}, MTU: mtu},
		netlab.HostSpec{Name: "col", Addrs: []string{labColAddr + "/24"}, MTU: mtu})
	e := &colLab{sender: l.Host("sender"), col: l.Host("col")}
	return e
}

// dial opens a UDP socket in the sender's namespace.
func (e *colLab) dial(t *testing.T, to *net.UDPAddr) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	err := e.sender.Do(func() (err error) {
		conn, err = net.DialUDP("udp", nil, to)
		return err
	})
	if err != nil {
		t.Fatalf("dial from the sender: %v", err)
	}
	return conn
}

// send sends each payload as one datagram from the sender.
func (e *colLab) send(t *testing.T, to *net.UDPAddr, payloads ...[]byte) {
	t.Helper()
	conn := e.dial(t, to)
	defer conn.Close()
	for _, p := range payloads {
		if _, err := conn.Write(p); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
}
