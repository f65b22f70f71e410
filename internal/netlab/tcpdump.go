// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Tcpdump is a running tcpdump: what users run today, and the reference the
// demo, the bench and the tests compare xmirror with.
type Tcpdump struct{ *Proc }

// StartTcpdump runs `tcpdump args...` in the host's namespace and returns once
// it prints "listening on": from then on it sees every packet.
func (h *Host) StartTcpdump(ctx context.Context, args ...string) (*Tcpdump, error) {
	p, err := h.Start("tcpdump", args...)
	if err != nil {
		return nil, err
	}
	return AwaitTcpdump(ctx, p)
}

// AwaitTcpdump waits until p, a tcpdump started some other way (under
// taskset, say), prints "listening on". It stops p when it fails.
func AwaitTcpdump(ctx context.Context, p *Proc) (*Tcpdump, error) {
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Output(), "listening on") {
		select {
		case <-p.Done():
			return nil, fmt.Errorf("tcpdump exited: %v: %s", p.Wait(), strings.TrimSpace(p.Output()))
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("tcpdump did not start listening within 10s: %s", strings.TrimSpace(p.Output()))
		}
	}
	return &Tcpdump{p}, nil
}

// TcpdumpCounts are the counts tcpdump prints when it stops; -1 for one it
// did not print.
type TcpdumpCounts struct {
	Captured, ReceivedByFilter, DroppedByKernel int64
}

// Complete says whether tcpdump wrote every packet its filter took: a
// reference capture must be complete.
func (c TcpdumpCounts) Complete() bool {
	return c.Captured >= 0 && c.DroppedByKernel == 0 && c.Captured == c.ReceivedByFilter
}

// ParseTcpdumpCounts reads the "N packets <what>" lines tcpdump prints when it
// stops.
func ParseTcpdumpCounts(output string) TcpdumpCounts {
	c := TcpdumpCounts{-1, -1, -1}
	for _, line := range strings.Split(output, "\n") {
		n, rest, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		rest = strings.TrimPrefix(strings.TrimPrefix(rest, "packets "), "packet ")
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil || v < 0 {
			continue
		}
		switch rest {
		case "captured":
			c.Captured = v
		case "received by filter":
			c.ReceivedByFilter = v
		case "dropped by kernel":
			c.DroppedByKernel = v
		}
	}
	return c
}

// Stop interrupts tcpdump, which then writes out what it holds and prints its
// counts, and returns them. It fails when tcpdump did not exit cleanly or
// printed no count of captured packets.
func (t *Tcpdump) Stop() (TcpdumpCounts, error) {
	t.Signal(syscall.SIGINT)
	err := t.Proc.Stop()
	c := ParseTcpdumpCounts(t.Output())
	if err == nil && c.Captured < 0 {
		err = errors.New("no count of captured packets")
	}
	if err != nil {
		return c, fmt.Errorf("tcpdump: %w: %s", err, strings.TrimSpace(t.Output()))
	}
	return c, nil
}

// Printed is what tcpdump printed for the packets (with -l, without -w): its
// banner and closing counts left out.
func (t *Tcpdump) Printed() []string {
	var lines []string
	for _, l := range strings.Split(t.Output(), "\n") {
		switch {
		case l == "", strings.HasPrefix(l, "tcpdump:"), strings.HasPrefix(l, "listening on"),
			strings.Contains(l, "packets captured"), strings.Contains(l, "received by filter"),
			strings.Contains(l, "dropped by kernel"):
			continue
		}
		lines = append(lines, l)
	}
	return lines
}
