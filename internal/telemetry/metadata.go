// SPDX-License-Identifier: Apache-2.0

package telemetry

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strings"
)

// build is what xmirror_build_info reports; SetBuild fills it in at start.
var build = struct{ version, commit string }{"dev", "unknown"}

// SetBuild records the version and commit the binary was built from, for
// xmirror_build_info on every part's /metrics.
func SetBuild(version, commit string) { build.version, build.commit = version, commit }

func writeBuildInfo(w io.Writer) {
	fmt.Fprintf(w, "xmirror_build_info{version=%q,commit=%q,goversion=%q} 1\n", build.version, build.commit, runtime.Version())
}

// help explains the metric families whose code does not write its own HELP.
// Families not listed get a generic text: Prometheus needs HELP and TYPE on
// every family for its metadata API and for dashboards' tooltips.
var help = map[string]string{
	"xmirror_build_info":                              "Version and commit of the running binary (always 1).",
	"xmirror_lb_up":                                   "1 while the load balancer's XDP program is attached and its tables are readable.",
	"xmirror_lb_packets_total":                        "Packets the load balancer's XDP program saw, by verdict (reason); the reasons sum to all packets.",
	"xmirror_lb_events_total":                         "Events counted beside the verdicts (fragments, connection-table misses); not packets to add up.",
	"xmirror_lb_active_slot":                          "Which of the two table slots the XDP program reads (flips on every reload).",
	"xmirror_lb_backend_packets_total":                "Packets forwarded to a backend (collector).",
	"xmirror_lb_backend_bytes_total":                  "Bytes forwarded to a backend (collector).",
	"xmirror_lb_backend_weight":                       "Configured weight of a backend; 0 drains it.",
	"xmirror_lb_backend_healthy":                      "1 while a backend passes its health check (always 1 without health checks).",
	"xmirror_lb_reloads_total":                        "Configuration reloads (SIGHUP) applied.",
	"xmirror_lb_reload_errors_total":                  "Configuration reloads refused; the running configuration was kept.",
	"xmirror_source_reloads_total":                    "Configuration reloads (SIGHUP) applied.",
	"xmirror_source_reload_errors_total":              "Configuration reloads refused; the running configuration was kept.",
	"xmirror_collector_reloads_total":                 "Configuration reloads (SIGHUP) whose sessions were applied.",
	"xmirror_collector_reload_errors_total":           "Configuration reloads refused; the running sessions were kept.",
	"xmirror_lb_config_last_reload_successful":        "0 from a refused reload until one is applied: the node runs another configuration than its file's.",
	"xmirror_source_config_last_reload_successful":    "0 from a refused reload until one is applied: the source runs another configuration than its file's.",
	"xmirror_collector_config_last_reload_successful": "0 from a refused reload until one is applied: the collector runs other sessions than its file's.",
	"xmirror_collector_received_total":                "VXLAN datagrams the collector received.",
	"xmirror_collector_packets_total":                 "Inner frames written to a session's capture files.",
	"xmirror_collector_bytes_total":                   "Bytes of inner frames written to a session's capture files.",
	"xmirror_collector_files_total":                   "Capture files a session closed.",
	"xmirror_collector_truncated_packets_total":       "Frames the source cut, written with their original length.",
	"xmirror_collector_drops_total":                   "Datagrams the collector dropped, by reason.",
	"xmirror_collector_socket_drops_total":            "Datagrams the kernel dropped because the collector's sockets were full.",
	"xmirror_collector_session_drops_total":           "Frames of a session it could not write (write errors, writing paused below min_free).",
	"xmirror_collector_source_packets_total":          "Frames a session received from one mirror source (other: beyond max_source_series).",
	"xmirror_collector_retention_removed_total":       "Closed capture files removed, by retention rule.",
	"xmirror_collector_live_packets_total":            "Frames handed to a live output (--write stream, TAP device).",
	"xmirror_collector_live_drops_total":              "Frames a live output dropped because its reader fell behind.",
	"xmirror_collector_stored_files":                  "Closed capture files (compressed or not) of all sessions in the output directory, at the last scan.",
	"xmirror_collector_stored_bytes":                  "Bytes of the closed capture files of all sessions, at the last scan.",
	"xmirror_collector_free_bytes":                    "Free bytes on the output directory's filesystem.",
	"xmirror_collector_disk_low":                      "1 while free space in the output directory is below collector.rotate.min_free.",
	"xmirror_collector_xdp_fragments_total":           "First IPv4 fragments the XDP receive path passed to the kernel to reassemble.",
	"xmirror_collector_xdp_interface_up":              "1 while the receive interface exists and runs the XDP receive program, 0 while it is gone.",
	"xmirror_lb_ready":                                "1 while some backend takes new flows (what /healthz reports).",
	"xmirror_lb_fail_open":                            "1 while every backend fails its health check and all_unhealthy: fail-open sends to them all.",
	"xmirror_lb_interface_up":                         "1 while the listener interface exists and runs the program, 0 while it is gone.",
	"xmirror_lb_bgp_session_up":                       "1 while the BGP session with a peer router is established.",
	"xmirror_lb_bgp_session_failure":                  "1 for the reason the BGP session with a peer router last failed (connection refused or unanswered, NOTIFICATION sent or received) while it is not established, or, while it is, that it runs over an interface the program is not on (the router's traffic for the VIP is dropped there).",
	"xmirror_lb_bgp_announced":                        "1 while the node announces the VIP over BGP (attached and some backend takes new flows).",
	"xmirror_lb_bgp_announcements_total":              "Times the node announced the VIP over BGP.",
	"xmirror_lb_bgp_withdrawals_total":                "Times the node withdrew the VIP over BGP.",
}

// withMetadata copies a Prometheus text exposition from r to w, adding the
// HELP and TYPE lines of every family that lacks them. A summary (samples
// with a quantile label) or a histogram (_bucket samples with an le label)
// is one family with its _sum and _count samples, as the format wants.
func withMetadata(w io.Writer, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	kinds := compositeKinds(lines)
	described := map[string]bool{}
	bw := bufio.NewWriter(w)
	for _, line := range lines {
		line = renamed(line)
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			described[strings.Fields(name + " ")[0]] = true
		} else if line != "" && line[0] != '#' {
			fam := familyOf(family(line), kinds)
			if !described[fam] {
				described[fam] = true
				fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", fam, helpOf(fam), fam, typeOf(fam, kinds))
			}
		}
		bw.WriteString(line)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// renames are process metrics of the metrics library whose names end in
// _count without being a summary's or histogram's count, which the format
// reserves (promtool check metrics refuses them).
var renames = map[string]string{
	"go_cgo_calls_count": "go_cgo_calls_total",
	"go_gc_forced_count": "go_gc_forced_total",
	"go_cpu_count":       "go_cpus",
}

// renamed is a sample line under its name from renames.
func renamed(line string) string {
	if line == "" || line[0] == '#' {
		return line
	}
	if to, ok := renames[family(line)]; ok {
		return to + line[len(family(line)):]
	}
	return line
}

// compositeKinds finds the summaries and histograms among the samples, by
// the name of their family.
func compositeKinds(lines []string) map[string]string {
	kinds := map[string]string{}
	for _, line := range lines {
		if line == "" || line[0] == '#' {
			continue
		}
		name := family(line)
		switch {
		case strings.Contains(line, `quantile="`):
			kinds[name] = "summary"
		case strings.HasSuffix(name, "_bucket") && strings.Contains(line, `le="`):
			kinds[strings.TrimSuffix(name, "_bucket")] = "histogram"
		}
	}
	return kinds
}

// familyOf is the family a sample named name belongs to: a summary's or
// histogram's _sum, _count (and _bucket) samples belong to it.
func familyOf(name string, kinds map[string]string) string {
	for _, suffix := range []string{"_sum", "_count", "_bucket"} {
		base, ok := strings.CutSuffix(name, suffix)
		if ok && kinds[base] != "" && (suffix != "_bucket" || kinds[base] == "histogram") {
			return base
		}
	}
	return name
}

// helpOf is the family's HELP text; the Go runtime's and the process's own
// families say whose they are.
func helpOf(fam string) string {
	if text := help[fam]; text != "" {
		return text
	}
	words := strings.ReplaceAll(fam, "_", " ")
	switch {
	case strings.HasPrefix(fam, "go_"):
		return "Go runtime: " + strings.TrimPrefix(words, "go ") + "."
	case strings.HasPrefix(fam, "process_"):
		return "This process: " + strings.TrimPrefix(words, "process ") + "."
	}
	return "xmirror " + words + "."
}

// family is the metric name of a sample line: before the labels or the value.
func family(line string) string {
	if i := strings.IndexAny(line, "{ "); i >= 0 {
		return line[:i]
	}
	return line
}

func typeOf(fam string, kinds map[string]string) string {
	if k := kinds[fam]; k != "" {
		return k
	}
	if strings.HasSuffix(fam, "_total") {
		return "counter"
	}
	return "gauge"
}

// exposition renders the set, the build info and the process metrics with metadata.
func exposition(w io.Writer, writeSet func(io.Writer), writeProcess func(io.Writer)) error {
	var buf bytes.Buffer
	writeBuildInfo(&buf)
	writeSet(&buf)
	writeProcess(&buf)
	return withMetadata(w, &buf)
}
