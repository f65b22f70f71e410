// SPDX-License-Identifier: Apache-2.0

package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/xmirror/xmirror/internal/netlab"
)

// Message is one line typed into nc on one side of the conversation.
type Message struct {
	From string // HostSource (the listener) or HostTest (the client)
	Text string
}

// Step5 is the seed's Step 5: "hello" and "source to test" typed on ECS-source,
// "test to source" typed on ECS-test.
var Step5 = []Message{
	{HostSource, "hello"},
	{HostSource, "source to test"},
	{HostTest, "test to source"},
}

// SecondConversation is a second connection on the mirrored port: a new flow,
// which the load balancer's round robin gives to the other target. Its reply is
// longer than the session's 96 bytes, to show a frame cut with its original length.
var SecondConversation = []Message{
	{HostTest, "second connection"},
	{HostSource, "mirrored as well; this line is longer than the 96 bytes the session keeps, so the file holds it cut, with its original length"},
}

// ConversationResult tells which client port a conversation used.
type ConversationResult struct {
	Client, Server *net.TCPAddr
	Messages       []Message
}

const ioTimeout = 5 * time.Second

// Conversation plays `nc -l PORT` on ECS-source and `nc 192.168.0.230 PORT` on
// ECS-test: it connects, sends each message as a line from its side and waits
// for the other side to read it, then the client closes (as Ctrl-C on nc would)
// and the server closes in turn.
func (d *Demo) Conversation(ctx context.Context, port int, msgs []Message) (ConversationResult, error) {
	src, test := d.lab.Host(HostSource), d.lab.Host(HostTest)
	res := ConversationResult{Messages: msgs}
	var ln net.Listener
	err := src.Do(func() error {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp4", net.JoinHostPort(src.Addr.String(), strconv.Itoa(port)))
		return err
	})
	if err != nil {
		return res, fmt.Errorf("listen on %s port %d: %w", HostSource, port, err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	acceptErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acceptErr <- err
			return
		}
		accepted <- c
	}()
	var client net.Conn
	err = test.Do(func() error {
		var err error
		client, err = (&net.Dialer{Timeout: ioTimeout}).DialContext(ctx, "tcp4", net.JoinHostPort(src.Addr.String(), strconv.Itoa(port)))
		return err
	})
	if err != nil {
		return res, fmt.Errorf("connect from %s to %s:%d: %w", HostTest, src.Addr, port, err)
	}
	defer client.Close()
	var server net.Conn
	select {
	case server = <-accepted:
	case err := <-acceptErr:
		return res, fmt.Errorf("accept on %s: %w", HostSource, err)
	case <-time.After(ioTimeout):
		return res, fmt.Errorf("accept on %s: no connection within %s", HostSource, ioTimeout)
	}
	defer server.Close()
	res.Client, _ = client.LocalAddr().(*net.TCPAddr)
	res.Server, _ = client.RemoteAddr().(*net.TCPAddr)

	readers := map[string]*bufio.Reader{HostSource: bufio.NewReader(server), HostTest: bufio.NewReader(client)}
	conns := map[string]net.Conn{HostSource: server, HostTest: client}
	for _, m := range msgs {
		to := HostTest
		if m.From == HostTest {
			to = HostSource
		}
		conns[m.From].SetWriteDeadline(time.Now().Add(ioTimeout))
		if _, err := conns[m.From].Write([]byte(m.Text + "\n")); err != nil {
			return res, fmt.Errorf("send %q from %s: %w", m.Text, m.From, err)
		}
		conns[to].SetReadDeadline(time.Now().Add(ioTimeout))
		line, err := readers[to].ReadString('\n')
		if err != nil {
			return res, fmt.Errorf("%s reading %q: %w", to, m.Text, err)
		}
		if strings.TrimSuffix(line, "\n") != m.Text {
			return res, fmt.Errorf("%s received %q, %s sent %q", to, line, m.From, m.Text)
		}
		// A person types slower than this; the pause lets each line's ACK go out
		// on its own, as in the seed's capture.
		time.Sleep(50 * time.Millisecond)
	}
	client.Close()
	server.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := readers[HostSource].ReadString('\n'); !errors.Is(err, io.EOF) {
		return res, fmt.Errorf("%s did not see the client close: %v", HostSource, err)
	}
	server.Close()
	// Let the last ACK of the close cross the wire before anything else happens.
	time.Sleep(100 * time.Millisecond)
	return res, ctx.Err()
}

// UnmatchedResult counts the traffic sent that mirror-filter-01 does not accept.
type UnmatchedResult struct {
	OtherPort  ConversationResult // TCP on port 1235
	UDP        int                // datagrams ECS-test sent to ECS-source port 1234
	ICMPEchoes int                // echo requests answered
}

// Unmatched sends traffic between the same two hosts that the seed's filter must
// not mirror: a TCP conversation on another port, UDP to the mirrored port number,
// and ICMP echo (ping).
func (d *Demo) Unmatched(ctx context.Context) (UnmatchedResult, error) {
	var res UnmatchedResult
	var err error
	res.OtherPort, err = d.Conversation(ctx, 1235, []Message{{HostTest, "not mirrored: another port"}, {HostSource, "not mirrored either"}})
	if err != nil {
		return res, fmt.Errorf("tcp port 1235: %w", err)
	}
	if res.UDP, err = d.udp(ctx, 1234, 3); err != nil {
		return res, fmt.Errorf("udp port 1234: %w", err)
	}
	if res.ICMPEchoes, err = d.ping(ctx, 3); err != nil {
		return res, fmt.Errorf("icmp echo: %w", err)
	}
	return res, nil
}

func (d *Demo) udp(ctx context.Context, port, count int) (int, error) {
	src, test := d.lab.Host(HostSource), d.lab.Host(HostTest)
	var srv, cli net.PacketConn
	addr := net.JoinHostPort(src.Addr.String(), strconv.Itoa(port))
	if err := src.Do(func() (err error) { srv, err = (&net.ListenConfig{}).ListenPacket(ctx, "udp4", addr); return }); err != nil {
		return 0, fmt.Errorf("listen on %s: %w", HostSource, err)
	}
	defer srv.Close()
	if err := test.Do(func() (err error) {
		cli, err = (&net.ListenConfig{}).ListenPacket(ctx, "udp4", net.JoinHostPort(test.Addr.String(), "0"))
		return
	}); err != nil {
		return 0, fmt.Errorf("socket on %s: %w", HostTest, err)
	}
	defer cli.Close()
	dst := &net.UDPAddr{IP: src.Addr.AsSlice(), Port: port}
	buf := make([]byte, 1500)
	for i := 0; i < count; i++ {
		msg := fmt.Sprintf("not mirrored: udp %d", i+1)
		if _, err := cli.WriteTo([]byte(msg), dst); err != nil {
			return i, fmt.Errorf("send: %w", err)
		}
		srv.SetReadDeadline(time.Now().Add(ioTimeout))
		n, _, err := srv.ReadFrom(buf)
		if err != nil {
			return i, fmt.Errorf("receive on %s: %w", HostSource, err)
		}
		if string(buf[:n]) != msg {
			return i, fmt.Errorf("%s received %q, sent %q", HostSource, buf[:n], msg)
		}
	}
	return count, nil
}

// ping sends ICMP echo requests from ECS-test to ECS-source on a raw socket and
// waits for each reply (there is no ping binary to rely on).
func (d *Demo) ping(ctx context.Context, count int) (int, error) {
	src, test := d.lab.Host(HostSource), d.lab.Host(HostTest)
	var c *icmp.PacketConn
	if err := test.Do(func() (err error) { c, err = icmp.ListenPacket("ip4:icmp", test.Addr.String()); return }); err != nil {
		return 0, fmt.Errorf("raw socket on %s: %w", HostTest, err)
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	dst := &net.IPAddr{IP: src.Addr.AsSlice()}
	buf := make([]byte, 1500)
	for seq := 1; seq <= count; seq++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("not mirrored: icmp")}}
		wb, err := msg.Marshal(nil)
		if err != nil {
			return seq - 1, err
		}
		if _, err := c.WriteTo(wb, dst); err != nil {
			return seq - 1, fmt.Errorf("send echo: %w", err)
		}
		for {
			c.SetReadDeadline(time.Now().Add(ioTimeout))
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return seq - 1, fmt.Errorf("no echo reply from %s: %w", HostSource, err)
			}
			rm, err := icmp.ParseMessage(1, buf[:n])
			if err != nil {
				continue // not for us: a raw socket sees every ICMP message
			}
			if e, ok := rm.Body.(*icmp.Echo); ok && rm.Type == ipv4.ICMPTypeEchoReply && e.ID == id && e.Seq == seq {
				break
			}
		}
		if err := ctx.Err(); err != nil {
			return seq, err
		}
	}
	return count, nil
}

// Capture is a tcpdump running in a host of the lab.
type Capture struct {
	path string
	dump *netlab.Tcpdump
	once sync.Once
	err  error
	out  []Frame
}

// StartCapture runs `tcpdump -i eth0 -s snaplen -U -w path filter` in host and
// waits until it listens, so that no packet sent afterwards is missed.
func (d *Demo) StartCapture(ctx context.Context, host, path string, snaplen int, filter string) (*Capture, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("capture directory: %w", err)
	}
	h := d.lab.Host(host)
	// -Z root: tcpdump would otherwise drop privileges to a user that may not be
	// able to write into path.
	// --immediate-mode: without it tcpdump takes packets from the kernel in blocks
	// (up to a second late), and those still in the ring when it stops are lost.
	dump, err := h.StartTcpdump(ctx, "-i", h.Iface, "-n", "--immediate-mode", "-s", strconv.Itoa(snaplen), "-U", "-Z", "root", "-w", path, filter)
	if err != nil {
		return nil, err
	}
	return &Capture{path: path, dump: dump}, nil
}

// Watch is `tcpdump -i eth0 udp port 4789 -nne` on a target, as the seed's
// Step 5 runs it: the VXLAN as it arrives, with the mirrored frame inside.
type Watch struct {
	dump *netlab.Tcpdump
}

// StartWatch runs the seed's tcpdump on host and waits until it listens.
func (d *Demo) StartWatch(ctx context.Context, host string) (*Watch, error) {
	h := d.lab.Host(host)
	dump, err := h.StartTcpdump(ctx, "-i", h.Iface, "-l", "--immediate-mode", "-nne", "udp", "port", "4789")
	if err != nil {
		return nil, err
	}
	return &Watch{dump: dump}, nil
}

// Stop ends the watch and returns what tcpdump printed for the packets: two lines
// each (the outer VXLAN, then the inner frame), without tcpdump's banners.
func (w *Watch) Stop() []string {
	time.Sleep(100 * time.Millisecond)
	w.dump.Stop()
	return w.dump.Printed()
}

// Stop ends the capture (after a moment for packets still in the socket's ring)
// and reads the file. It may be called more than once.
func (c *Capture) Stop() ([]Frame, error) {
	c.once.Do(func() {
		time.Sleep(300 * time.Millisecond)
		counts, err := c.dump.Stop()
		if err != nil {
			c.err = err
			return
		}
		if !counts.Complete() {
			c.err = fmt.Errorf("tcpdump lost packets (a reference must be complete): %s", strings.TrimSpace(c.dump.Output()))
			return
		}
		c.out, c.err = ReadCaptureFile(c.path)
	})
	return c.out, c.err
}

// Path is the capture file.
func (c *Capture) Path() string { return c.path }
