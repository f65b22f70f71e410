// SPDX-License-Identifier: Apache-2.0

package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Target health. Sending is fire and forget: a datagram to an absent target
// leaves without an error, and a neighbour that never answers ARP drops the
// packets in the kernel after the socket has counted them sent. So the
// source watches each target: its route and next-hop neighbour (every
// healthEvery), the ICMP errors that come back about mirrored packets, and
// the datapath's send failures. A problem shows in the metrics, in `xmirror
// source status`, in the log (on change, and again every logEvery while it
// lasts) and in Ready, which /healthz answers.

// Why a target is not healthy (label reason of xmirror_source_target_problem).
const (
	ReasonNoRoute    = "no_route"
	ReasonUnresolved = "neighbour_unresolved"
	ReasonICMP       = "icmp_error"
	ReasonSendErrors = "send_errors"
)

var (
	healthEvery = time.Second
	// icmpRecent is how long an ICMP error about a target counts.
	icmpRecent = 10 * time.Second
	logEvery   = time.Minute
)

// TargetHealth is what the source knows of one target.
type TargetHealth struct {
	Target     netip.Addr
	Sessions   []string // enabled sessions sending to it
	Reason     string   // a Reason*, "" while healthy
	Detail     string   // what is wrong, for people
	ICMPErrors uint64   // about packets mirrored to it, since the start
}

// targetState is a target's health and what the next check compares with.
type targetState struct {
	TargetHealth
	ids        []uint16 // of its sessions
	incomplete bool     // the neighbour was being resolved at the last check
	icmpAt     time.Time
	icmpDetail string
	sendErrs   uint64 // at the last check
	loggedAt   time.Time
	logged     string // reason and detail last logged
}

// watch checks the targets of the running program.
type watch struct {
	mu      sync.Mutex
	targets map[netip.Addr]*targetState
	dp      datapath
	mark    uint32
	nl      *netlink.Handle
	icmp    int // raw ICMP socket, -1 without one
	done    chan struct{}
	wg      sync.WaitGroup
}

// startWatch starts watching, in the caller's network namespace, the
// targets that prog (running) sends to through dp.
func startWatch(dp datapath, mark uint32) (*watch, error) {
	w := &watch{targets: map[netip.Addr]*targetState{}, dp: dp, mark: mark, icmp: -1, done: make(chan struct{})}
	var err error
	if w.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("target watch: netlink: %w", err)
	}
	if w.icmp, err = icmpErrorSocket(); err != nil {
		slog.Warn("target watch: ICMP errors will not be seen", "err", err)
	}
	w.wg.Add(1)
	go w.checkLoop()
	if w.icmp >= 0 {
		w.wg.Add(1)
		go w.readICMP()
	}
	return w, nil
}

// running tells the watch the targets and sessions of the program running now.
func (w *watch) running(prog *Program) {
	ids := map[netip.Addr][]uint16{}
	for id, sess := range prog.Sessions {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], sess.Remote)
		a := netip.AddrFrom4(b)
		ids[a] = append(ids[a], id)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	next := map[netip.Addr]*targetState{}
	for a, list := range ids {
		sort.Slice(list, func(i, j int) bool { return list[i] < list[j] })
		st := w.targets[a]
		if st == nil {
			st = &targetState{TargetHealth: TargetHealth{Target: a}}
		}
		st.ids, st.Sessions = list, nil
		for _, id := range list {
			st.Sessions = append(st.Sessions, prog.Names[id])
		}
		next[a] = st
	}
	w.targets = next
}

func (w *watch) checkLoop() {
	defer w.wg.Done()
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
			w.checkAll(time.Now())
		}
	}
}

// checkAll checks every target and logs what changed. The checks run
// without the lock (they ask the kernel); what running and readICMP change
// is read and written under it.
func (w *watch) checkAll(now time.Time) {
	type job struct {
		st  *targetState
		ids []uint16
	}
	w.mu.Lock()
	jobs := make([]job, 0, len(w.targets))
	for _, st := range w.targets {
		jobs = append(jobs, job{st, append([]uint16(nil), st.ids...)})
	}
	w.mu.Unlock()
	for _, j := range jobs {
		reason, detail := w.check(j.st, j.ids, now)
		w.mu.Lock()
		j.st.Reason, j.st.Detail = reason, detail
		logTarget(j.st, now)
		w.mu.Unlock()
	}
}

// check finds the first problem of a target (sessions ids): its route, its
// next hop, ICMP errors, send failures. Only the checking goroutine uses
// sendErrs and incomplete.
func (w *watch) check(st *targetState, ids []uint16, now time.Time) (reason, detail string) {
	var errs uint64
	for _, id := range ids {
		errs += w.dp.errors(id, dirIn) + w.dp.errors(id, dirOut)
	}
	newErrs := errs - st.sendErrs
	st.sendErrs = errs
	if reason, detail = w.nextHop(st, st.Target); reason != "" {
		return reason, detail
	}
	w.mu.Lock()
	icmpAt, icmpDetail := st.icmpAt, st.icmpDetail
	w.mu.Unlock()
	if !icmpAt.IsZero() && now.Sub(icmpAt) < icmpRecent {
		return ReasonICMP, icmpDetail
	}
	if newErrs > 0 {
		return ReasonSendErrors, fmt.Sprintf("%d packets to it failed to send in the last %v", newErrs, healthEvery)
	}
	return "", ""
}

// nextHop checks the route to dst (with the tunnel mark, as the datapaths
// send) and, on a link with ARP, the neighbour entry of the next hop: failed,
// or still being resolved at two checks in a row, means nothing answers. A
// target on this host (a local route) has no next hop: its copies are
// delivered here, and only ICMP errors tell of a problem.
func (w *watch) nextHop(st *targetState, dst netip.Addr) (reason, detail string) {
	routes, err := w.nl.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{Mark: w.mark})
	if err == nil && len(routes) > 0 && routes[0].Type == unix.RTN_LOCAL {
		return "", ""
	}
	if err != nil || len(routes) == 0 || routes[0].LinkIndex <= 0 ||
		(routes[0].Type != 0 && routes[0].Type != unix.RTN_UNICAST) {
		return ReasonNoRoute, fmt.Sprintf("no route to %s", dst)
	}
	rt := routes[0]
	link, err := w.nl.LinkByIndex(rt.LinkIndex)
	if err != nil {
		return ReasonNoRoute, fmt.Sprintf("the route to %s leaves through a missing interface (%d)", dst, rt.LinkIndex)
	}
	name := link.Attrs().Name
	if link.Attrs().Flags&net.FlagUp == 0 {
		return ReasonNoRoute, fmt.Sprintf("the route to %s leaves through %s, which is down", dst, name)
	}
	// The kernel keeps the route of a link that lost its carrier and
	// forgets its neighbours: without this the next hop would look like a
	// host that does not answer ARP.
	if link.Attrs().RawFlags&unix.IFF_LOWER_UP == 0 {
		return ReasonNoRoute, fmt.Sprintf("the route to %s leaves through %s, which has no carrier", dst, name)
	}
	nh := net.IP(dst.AsSlice())
	if rt.Gw != nil {
		nh = rt.Gw
	}
	st.incomplete, err = w.neighbourState(st, link, nh)
	if err != nil {
		return ReasonUnresolved, fmt.Sprintf("next hop %s on %s: %v", nh, name, err)
	}
	return "", ""
}

// errNoAnswer is a neighbour that does not answer ARP.
var errNoAnswer = errors.New("does not answer ARP (neighbour unresolved)")

func (w *watch) neighbourState(st *targetState, link netlink.Link, nh net.IP) (incomplete bool, err error) {
	if link.Attrs().EncapType != "ether" {
		return false, nil
	}
	neighs, err := w.nl.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return false, nil // not known: not a problem of the target
	}
	for _, n := range neighs {
		if !n.IP.Equal(nh) {
			continue
		}
		switch {
		case n.State&netlink.NUD_FAILED != 0:
			return false, errNoAnswer
		case n.State&netlink.NUD_INCOMPLETE != 0:
			if st.incomplete {
				return true, errNoAnswer
			}
			return true, nil
		}
	}
	return false, nil
}

// logTarget logs a target's health when it changed, and a problem again
// every logEvery while it lasts: a rate-limited log.
func logTarget(st *targetState, now time.Time) {
	what := st.Reason + ": " + st.Detail
	if what == st.logged && (st.Reason == "" || now.Sub(st.loggedAt) < logEvery) {
		return
	}
	if st.Reason == "" {
		if st.logged != "" {
			slog.Info("mirror target reachable again", "target", st.Target, "sessions", strings.Join(st.Sessions, ","))
		}
	} else {
		slog.Warn("mirror target unreachable: mirrored packets are lost", "target", st.Target,
			"sessions", strings.Join(st.Sessions, ","), "reason", st.Reason, "detail", st.Detail)
	}
	st.logged, st.loggedAt = what, now
	if st.Reason == "" {
		st.logged = ""
	}
}

// icmpErrorSocket is a raw ICMP socket that receives only destination
// unreachable and time exceeded messages (a socket filter drops the rest in
// the kernel).
func icmpErrorSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return -1, fmt.Errorf("ICMP socket: %w", err)
	}
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadMemShift{Off: 0},                              // X = IPv4 header length
		bpf.LoadIndirect{Off: 0, Size: 1},                     // A = ICMP type
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 3, SkipTrue: 2},  // destination unreachable
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 11, SkipTrue: 1}, // time exceeded
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 0xffff},
	})
	if err == nil {
		filter := make([]unix.SockFilter, len(prog))
		for i, in := range prog {
			filter[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
		}
		err = unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
			&unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
	}
	if err == nil {
		// Reads wake up to see that the watch is closing.
		err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("ICMP socket: %w", err)
	}
	return fd, nil
}

// readICMP counts the ICMP errors about mirrored packets by target.
func (w *watch) readICMP() {
	defer w.wg.Done()
	buf := make([]byte, 1500)
	for {
		select {
		case <-w.done:
			return
		default:
		}
		n, _, err := unix.Recvfrom(w.icmp, buf, 0)
		if err != nil {
			continue // the timeout, or a signal
		}
		target, detail, ok := parseICMPError(buf[:n])
		if !ok {
			continue
		}
		w.mu.Lock()
		if st := w.targets[target]; st != nil {
			st.ICMPErrors++
			st.icmpAt, st.icmpDetail = time.Now(), detail
		}
		w.mu.Unlock()
	}
}

// parseICMPError reads an IPv4 packet carrying an ICMP error (as a raw ICMP
// socket receives it) about a UDP packet to the VXLAN port: it returns the
// quoted packet's destination, the target, and what happened.
func parseICMPError(p []byte) (target netip.Addr, detail string, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_ICMP {
		return target, "", false
	}
	ihl := int(p[0]&15) * 4
	if ihl < 20 || len(p) < ihl+8+20 {
		return target, "", false
	}
	from := netip.AddrFrom4([4]byte(p[12:16]))
	icmp := p[ihl:]
	typ, code := icmp[0], icmp[1]
	q := icmp[8:]
	qihl := int(q[0]&15) * 4
	if q[0]>>4 != 4 || qihl < 20 || q[9] != unix.IPPROTO_UDP || len(q) < qihl+4 ||
		binary.BigEndian.Uint16(q[qihl+2:]) != vxlanPort {
		return target, "", false
	}
	target = netip.AddrFrom4([4]byte(q[16:20]))
	return target, fmt.Sprintf("ICMP %s from %s", icmpName(typ, code), from), true
}

func icmpName(typ, code byte) string {
	if typ == 11 {
		return "time exceeded"
	}
	switch code {
	case 0:
		return "network unreachable"
	case 1:
		return "host unreachable"
	case 3:
		return "port unreachable (nothing listens on UDP 4789)"
	case 4:
		return "fragmentation needed"
	case 9, 10, 13:
		return "administratively prohibited"
	}
	return fmt.Sprintf("destination unreachable (code %d)", code)
}

// health returns the targets' health, by address.
func (w *watch) health() []TargetHealth {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]TargetHealth, 0, len(w.targets))
	for _, st := range w.targets {
		h := st.TargetHealth
		h.Sessions = append([]string(nil), st.Sessions...)
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target.Less(out[j].Target) })
	return out
}

func (w *watch) writeMetrics(wr io.Writer) {
	hs := w.health()
	fmt.Fprintf(wr, "# HELP xmirror_source_target_up Whether mirrored packets look like they reach the target: a route, a neighbour that answers, no recent ICMP errors or send failures.\n# TYPE xmirror_source_target_up gauge\n")
	for _, h := range hs {
		up := 1
		if h.Reason != "" {
			up = 0
		}
		fmt.Fprintf(wr, "xmirror_source_target_up{target=%q} %d\n", h.Target.String(), up)
	}
	fmt.Fprintf(wr, "# HELP xmirror_source_target_problem Why a target is not up (reason), 1 while it lasts.\n# TYPE xmirror_source_target_problem gauge\n")
	for _, h := range hs {
		if h.Reason != "" {
			fmt.Fprintf(wr, "xmirror_source_target_problem{target=%q,reason=%q,detail=%q} 1\n", h.Target.String(), h.Reason, h.Detail)
		}
	}
	fmt.Fprintf(wr, "# HELP xmirror_source_target_icmp_errors_total ICMP errors received about packets mirrored to the target.\n# TYPE xmirror_source_target_icmp_errors_total counter\n")
	for _, h := range hs {
		fmt.Fprintf(wr, "xmirror_source_target_icmp_errors_total{target=%q} %d\n", h.Target.String(), h.ICMPErrors)
	}
}

// ready is nil while every target is healthy, else what is wrong.
func (w *watch) ready() error {
	var errs []error
	for _, h := range w.health() {
		if h.Reason != "" {
			errs = append(errs, fmt.Errorf("target %s (sessions %s): %s: %s", h.Target, strings.Join(h.Sessions, ","), h.Reason, h.Detail))
		}
	}
	return errors.Join(errs...)
}

func (w *watch) close() {
	close(w.done)
	w.wg.Wait()
	if w.icmp >= 0 {
		unix.Close(w.icmp)
	}
	w.nl.Close()
}
