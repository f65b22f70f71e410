// SPDX-License-Identifier: Apache-2.0

package demo

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/xmirror/xmirror/internal/telemetry"
)

// report is what `xmirror demo` prints once the collectors have closed their files.
type report struct {
	d         *Demo
	convs     []ConversationResult
	unmatched UnmatchedResult
	ref       []Frame // tcpdump -s ReferenceSnap() on ECS-source
	got       []Frame // the union of both targets' files
	counters  map[string][]telemetry.Sample
	wire      map[string][]string // the seed's tcpdump on each target
	problems  []string
}

// print writes the report, one section after the other; a section that finds
// the demo wrong adds to r.problems.
func (r *report) print(w io.Writer) {
	r.printSetup(w)
	r.printMirrored(w)
	r.printWire(w)
	byFile, files := r.framesByFile()
	r.printFiles(w, byFile)
	r.printPackets(w, byFile, files)
	r.printCheck(w)
	r.printCounters(w)
	fmt.Fprintf(w, "\nOpen the files with: tshark -r FILE   or   wireshark FILE   (under %s)\n", r.d.opts.OutDir)
}

// printSetup shows the session, its filter and the load balancer.
func (r *report) printSetup(w io.Writer) {
	d := r.d
	s := d.session
	lb := d.cfg.LoadBalancer
	fmt.Fprintf(w, "\n== What was set up\n")
	fmt.Fprintf(w, "  mirror session %s: priority %d, VNI %d, packet length %d, sources %s of ECS-source, target %s (ELB-A)\n",
		s.Name, s.Priority, s.VNI, s.PacketLength, strings.Join(s.Sources, ","), s.Target)
	for _, f := range d.cfg.Filters {
		if f.Name != s.Filter {
			continue
		}
		for _, rule := range f.Inbound {
			fmt.Fprintf(w, "  filter %s inbound  %s\n", f.Name, ruleString(rule))
		}
		for _, rule := range f.Outbound {
			fmt.Fprintf(w, "  filter %s outbound %s\n", f.Name, ruleString(rule))
		}
	}
	fmt.Fprintf(w, "  load balancer %s %s:%d: %s, affinity %s, health checks %s\n", lb.Listener.Name, lb.Listener.VIP,
		lb.Listener.Port, lb.Algorithm, lb.Affinity, onOff(lb.HealthCheck.Enabled))
	for _, b := range lb.Backends {
		fmt.Fprintf(w, "    backend %s %s:%d weight %d\n", b.Name, b.Address, b.Port, b.Weight)
	}
	if lb.Affinity == "outer" {
		fmt.Fprintf(w, "  affinity outer with the source hashing per direction (source.hash: %s), like the seed's cloud:\n", d.cfg.Source.Hash)
		fmt.Fprintf(w, "  the two directions of a conversation may reach different targets\n")
	}
}

// printMirrored shows each conversation's directions and the target that got
// them, and that the traffic the filter rejects is in no file.
func (r *report) printMirrored(w io.Writer) {
	fmt.Fprintf(w, "\n== What was mirrored, and to which target\n")
	place := Placement(r.got)
	for _, c := range r.convs {
		if c.Client == nil {
			continue
		}
		var lines []string
		for _, m := range c.Messages {
			lines = append(lines, fmt.Sprintf("%s: %q", m.From, m.Text))
		}
		fmt.Fprintf(w, "  TCP %s:%d (ECS-test) <-> %s:%d (ECS-source): %s\n", c.Client.IP, c.Client.Port, c.Server.IP, c.Server.Port, strings.Join(lines, ", "))
		out := Flow{Proto: "tcp", Src: endpoint(c.Server.IP.String(), uint16(c.Server.Port)), Dst: endpoint(c.Client.IP.String(), uint16(c.Client.Port))}
		for _, fl := range []Flow{out.Reverse(), out} {
			dir := "inbound  (ECS-test -> ECS-source)"
			if fl == out {
				dir = "outbound (ECS-source -> ECS-test)"
			}
			n := countFlow(r.got, fl)
			to := strings.Join(place[fl], " and ")
			if to == "" {
				to = "NO TARGET"
			}
			fmt.Fprintf(w, "    %s: %2d frames -> %s\n", dir, n, to)
		}
	}
	fmt.Fprintf(w, "  not mirrored, as the filter says: TCP port 1235 (%s), %d UDP datagrams to port 1234, %d ICMP echo exchanges",
		portOf(r.unmatched.OtherPort), r.unmatched.UDP, r.unmatched.ICMPEchoes)
	if n := r.unmatchedFrames(); n > 0 {
		fmt.Fprintf(w, " -- BUT %d of their frames are in the files\n", n)
		r.problems = append(r.problems, fmt.Sprintf("%d frames of unmatched traffic were collected", n))
	} else {
		fmt.Fprintf(w, " -- none in any file\n")
	}
}

// printWire shows the first packets the seed's tcpdump saw on each target.
func (r *report) printWire(w io.Writer) {
	if len(r.wire) == 0 {
		return
	}
	fmt.Fprintf(w, "\n== On the wire at the targets, as the seed's Step 5 shows it (tcpdump -i eth0 udp port 4789 -nne)\n")
	for _, t := range Targets {
		lines := r.wire[t]
		fmt.Fprintf(w, "  [root@%s ~]# tcpdump -i eth0 udp port 4789 -nne\n", strings.ToLower(t))
		shown, total := 0, 0
		for _, l := range lines {
			if startsWithTime(l) {
				total++
			}
			if total <= wirePackets && total > 0 {
				fmt.Fprintf(w, "  %s\n", l)
				shown = total
			}
		}
		if total > shown {
			fmt.Fprintf(w, "  ... and %d more packets\n", total-shown)
		}
		if total == 0 {
			fmt.Fprintf(w, "  (no packet)\n")
		}
	}
}

// framesByFile groups the collected frames by the file they were read from;
// files lists those files in the order their first frame came.
func (r *report) framesByFile() (byFile map[string][]Frame, files []string) {
	byFile = map[string][]Frame{}
	for _, f := range r.got {
		if _, ok := byFile[f.File]; !ok {
			files = append(files, f.File)
		}
		byFile[f.File] = append(byFile[f.File], f)
	}
	return byFile, files
}

// printFiles lists every capture file of each target with its frames and size.
func (r *report) printFiles(w io.Writer, byFile map[string][]Frame) {
	fmt.Fprintf(w, "\n== Files written (one series per session, per target)\n")
	for _, t := range Targets {
		names, _ := CaptureFiles(r.d.TargetDir(t))
		if len(names) == 0 {
			fmt.Fprintf(w, "  %s: no file\n", t)
		}
		for _, n := range names {
			size := int64(0)
			if st, err := os.Stat(n); err == nil {
				size = st.Size()
			}
			fmt.Fprintf(w, "  %s: %s  (%d frames, %d bytes)\n", t, r.rel(n), len(byFile[n]), size)
		}
	}
}

// printPackets shows the frames of each file, one tcpdump-style line each.
func (r *report) printPackets(w io.Writer, byFile map[string][]Frame, files []string) {
	fmt.Fprintf(w, "\n== Their packets (tcpdump -nne style; the collector recovers each frame's original length)\n")
	for _, name := range files {
		frames := byFile[name]
		ifaces := map[string]bool{}
		for _, f := range frames {
			if f.Iface != "" {
				ifaces[f.Iface] = true
			}
		}
		fmt.Fprintf(w, "  %s %s", frames[0].Target, r.rel(name))
		if len(ifaces) > 0 {
			fmt.Fprintf(w, " (interface %s)", strings.Join(sortedKeys(ifaces), ", "))
		}
		fmt.Fprintln(w)
		sum := NewSummarizer()
		for _, f := range frames {
			fmt.Fprintf(w, "    %s %s\n", f.Time.UTC().Format("15:04:05.000000"), sum.Line(f))
		}
	}
}

// printCheck compares the files with the reference capture and, with
// inner-symmetric affinity, checks that both directions of a conversation
// reached one target.
func (r *report) printCheck(w io.Writer) {
	fmt.Fprintf(w, "\n== Check against tcpdump -s %d on ECS-source eth0 (%s)\n", r.d.ReferenceSnap(), ReferenceFilter)
	mm := Compare(r.ref, r.got)
	if len(mm) == 0 {
		fmt.Fprintf(w, "  identical: the %d frames tcpdump captured are exactly the %d frames in the targets' files (bytes, original lengths, order per direction)\n", len(r.ref), len(r.got))
	} else {
		fmt.Fprintf(w, "  DIFFERENT: tcpdump captured %d frames, the targets' files hold %d\n", len(r.ref), len(r.got))
		for i, m := range mm {
			if i == 10 {
				fmt.Fprintf(w, "    ... and %d more\n", len(mm)-10)
				break
			}
			fmt.Fprintf(w, "    %s\n", m)
		}
		r.problems = append(r.problems, fmt.Sprintf("%d differences, first: %s", len(mm), mm[0]))
	}
	if r.d.cfg.LoadBalancer.Affinity != "inner-symmetric" {
		return
	}
	place := Placement(r.got)
	for _, c := range r.convs {
		if c.Client == nil {
			continue
		}
		fl := Flow{Proto: "tcp", Src: endpoint(c.Client.IP.String(), uint16(c.Client.Port)), Dst: endpoint(c.Server.IP.String(), uint16(c.Server.Port))}
		a, b := place[fl], place[fl.Reverse()]
		if len(a) != 1 || len(b) != 1 || a[0] != b[0] {
			r.problems = append(r.problems, fmt.Sprintf("the directions of %s went to %v and %v", fl, a, b))
			fmt.Fprintf(w, "  SPLIT: the directions of %s went to %v and %v despite inner-symmetric affinity\n", fl, a, b)
		}
	}
}

// printCounters shows the non-zero xmirror counters of every part.
func (r *report) printCounters(w io.Writer) {
	fmt.Fprintf(w, "\n== Counters (non-zero xmirror_* samples from each part's /metrics)\n")
	for _, h := range []string{HostLB, HostTarget01, HostTarget02, HostSource} {
		part := map[string]string{HostLB: "xmirror lb", HostSource: "xmirror source"}[h]
		if part == "" {
			part = "xmirror collect"
		}
		fmt.Fprintf(w, "  %s (%s, http://%s/metrics)\n", h, part, r.d.metricsAddr(h))
		samples := Interesting(r.counters[h])
		if len(samples) == 0 {
			fmt.Fprintf(w, "    (none)\n")
		}
		for _, s := range samples {
			fmt.Fprintf(w, "    %s\n", s)
		}
	}
}

// unmatchedFrames counts collected frames of the traffic the filter rejects.
func (r *report) unmatchedFrames() int {
	n := 0
	for _, f := range r.got {
		fl := FlowOf(f.Data)
		if fl.Proto != "tcp" || (fl.Src.Port != 1234 && fl.Dst.Port != 1234) {
			n++
		}
	}
	return n
}

func (r *report) rel(path string) string {
	if rel, err := filepath.Rel(r.d.opts.OutDir, path); err == nil {
		return rel
	}
	return path
}

func countFlow(frames []Frame, fl Flow) int {
	n := 0
	for _, f := range frames {
		if FlowOf(f.Data) == fl {
			n++
		}
	}
	return n
}

func portOf(c ConversationResult) string {
	if c.Client == nil {
		return "not sent"
	}
	return fmt.Sprintf("client port %d", c.Client.Port)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// printKeepRunning tells a person how to look around while the topology stays up.
func (d *Demo) printKeepRunning() {
	w := d.out
	fmt.Fprintf(w, "\n== Still running (--keep-running); Ctrl-C removes everything\n")
	for _, h := range d.lab.Hosts() {
		fmt.Fprintf(w, "  %-14s %-15s nsenter --net=%s bash\n", h.Name, h.Addr, d.lab.NetNSPath(h.Name))
	}
	fmt.Fprintf(w, "  try: nsenter --net=%s nc -l 1234        (ECS-source)\n", d.lab.NetNSPath(HostSource))
	fmt.Fprintf(w, "       nsenter --net=%s nc 192.168.0.230 1234   (ECS-test)\n", d.lab.NetNSPath(HostTest))
	fmt.Fprintf(w, "       nsenter --net=%s tcpdump -i eth0 -nne udp port 4789   (a target, as in the seed)\n", d.lab.NetNSPath(HostTarget01))
	fmt.Fprintf(w, "  new capture files appear under %s and %s\n", d.TargetDir(HostTarget01), d.TargetDir(HostTarget02))
}

// wirePackets is how many packets per target the seed-style view shows: enough to
// see the outer header (source kept, VNI 1) and the frame inside.
const wirePackets = 3

// startsWithTime tells a tcpdump packet line ("05:19:52.109971 ...") from the
// continuation line that shows the encapsulated frame.
func startsWithTime(l string) bool {
	return len(l) > 9 && l[2] == ':' && l[5] == ':' && l[8] == '.' && l[0] >= '0' && l[0] <= '9'
}
