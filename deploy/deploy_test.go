// SPDX-License-Identifier: Apache-2.0

// Package deploy_test checks the deployment files in this folder: the systemd
// units, the .deb, the monitoring rules and dashboard, the Kubernetes manifests,
// and that the shipped example configurations work together.
package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

func TestMain(m *testing.M) { labtest.Main(m) }

// needTool fails when a tool that `make deps` installs is missing: CI always
// has it, so a missing one is a broken setup, not a reason to skip.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("needs %s (Debian package %s): run make deps", name, pkg)
	}
	return p
}

var units = map[string][]string{
	"xmirror-lb.service":      {"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"},
	"xmirror-source.service":  {"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_NET_RAW"},
	"xmirror-collect.service": {},
}

// TestUnitsVerify: systemd-analyze verify accepts the units (with ExecStart
// pointing at a built binary, since verify checks that it exists), and each
// holds exactly the capabilities its part was measured to need.
func TestUnitsVerify(t *testing.T) {
	sa := needTool(t, "systemd-analyze", "systemd")
	bin := labtest.XmirrorBinary(t)
	dir := t.TempDir()
	var paths []string
	for name, caps := range units {
		text := unitText(t, name)
		want := strings.Join(caps, " ")
		for _, key := range []string{"AmbientCapabilities=", "CapabilityBoundingSet="} {
			if !strings.Contains(text, "\n"+key+want+"\n") {
				t.Errorf("%s: want %s%s", name, key, want)
			}
		}
		for _, key := range []string{"User=xmirror", "StateDirectory=xmirror", "ProtectSystem=strict", "NoNewPrivileges=yes", "ExecReload=/bin/kill -HUP $MAINPID"} {
			if !strings.Contains(text, "\n"+key+"\n") {
				t.Errorf("%s lacks %s", name, key)
			}
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(strings.ReplaceAll(text, "/usr/bin/xmirror", bin)), 0o644)
		paths = append(paths, p)
	}
	out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDebVersion: a build from a commit sorts below every release, also a
// commit whose hash starts with a digit (7962cea-1 sorted above 1.2.3-1),
// and a later commit above an earlier one: the version was 0~git<hash>-1, so
// whether an upgrade between two commit builds was one depended on the
// hashes (dpkg -i of 4148d3f over e3d471e said "downgrading", and apt kept
// the older). The commit time, when known, comes first.
func TestDebVersion(t *testing.T) {
	dpkg := needTool(t, "dpkg", "dpkg")
	for _, c := range []struct{ in, epoch, want string }{
		{"v1.2.3", "1765080000", "1.2.3-1"},
		{"v1.2.3-4-gabc1234", "1765080000", "1.2.3+4+gabc1234-1"},
		{"7962cea", "", "0~git7962cea-1"},
		{"7962cea", "1765080000", "0~git+20251207040000.7962cea-1"},
		{"abc1234-dirty", "1765080000", "0~git+20251207040000.abc1234+dirty-1"},
	} {
		out, err := exec.Command("deb/build.sh", "--debver", c.in, c.epoch).Output()
		if got := strings.TrimSpace(string(out)); err != nil || got != c.want {
			t.Errorf("%s at %s -> %q (%v), want %q", c.in, c.epoch, got, err, c.want)
			continue
		}
		if strings.HasPrefix(c.want, "0~git") {
			if err := exec.Command(dpkg, "--compare-versions", c.want, "lt", "0.1-1").Run(); err != nil {
				t.Errorf("%s does not sort below a release", c.want)
			}
		}
	}
	// e3d471e, then 4148d3f a day later; and a build of the old form
	// (0~git<hash>-1) upgraded to one of the new.
	older, _ := exec.Command("deb/build.sh", "--debver", "e3d471e", "1765000000").Output()
	newer, _ := exec.Command("deb/build.sh", "--debver", "4148d3f", "1765086400").Output()
	for _, prev := range []string{strings.TrimSpace(string(older)), "0~gite3d471e-1", "0~git7962cea-1", "0~gitabc1234+dirty-1"} {
		next := strings.TrimSpace(string(newer))
		if err := exec.Command(dpkg, "--compare-versions", next, "gt", prev).Run(); err != nil {
			t.Errorf("the later commit's %q does not sort above the earlier %q: dpkg -i calls the upgrade a downgrade", next, prev)
		}
	}
}

// TestDeb builds the package from a built binary and runs lintian on it.
func TestDeb(t *testing.T) {
	needTool(t, "dpkg-deb", "dpkg")
	lintian := needTool(t, "lintian", "lintian")
	out := t.TempDir()
	// Built as `make build` does: static and stripped.
	bin := filepath.Join(out, "xmirror")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v1.2.3", "-o", bin, "../cmd/xmirror")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := exec.Command("deb/build.sh", bin, "v1.2.3", filepath.Join(out, "dist")).CombinedOutput()
	if err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	deb := strings.TrimSpace(string(b))
	if !strings.HasSuffix(deb, "xmirror_1.2.3-1_"+debArch(t)+".deb") {
		t.Fatalf("package name %q", deb)
	}
	list, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"./usr/bin/xmirror", "./lib/systemd/system/xmirror-lb.service", "./lib/systemd/system/xmirror-collect.service",
		"./lib/systemd/system/xmirror-source.service", "./etc/xmirror/xmirror.yaml", "./usr/share/doc/xmirror/examples/lb.yaml",
		"./usr/share/man/man8/xmirror.8.gz", "./usr/share/bash-completion/completions/xmirror", "./usr/share/doc/xmirror/copyright"} {
		if !strings.Contains(string(list), " "+f+"\n") {
			t.Errorf("package lacks %s", f)
		}
	}
	post, err := exec.Command("dpkg-deb", "-I", deb, "postinst").Output()
	if err != nil || !strings.Contains(string(post), "adduser --system --group") {
		t.Errorf("postinst does not create the xmirror user: %v\n%s", err, post)
	}
	lo, _ := exec.Command(lintian, "--tag-display-limit", "0", deb).CombinedOutput()
	for _, line := range strings.Split(string(lo), "\n") {
		if strings.HasPrefix(line, "E: ") {
			t.Errorf("lintian: %s", line)
		}
	}
	t.Logf("lintian:\n%s", lo)
}

func debArch(t *testing.T) string {
	b, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestAlertRules: promtool accepts the rules, and the alerts the operators asked
// for are there.
func TestAlertRules(t *testing.T) {
	promtool := needTool(t, "promtool", "prometheus")
	out, err := exec.Command(promtool, "check", "rules", "monitoring/alerts.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	b, _ := os.ReadFile("monitoring/alerts.yml")
	for _, a := range []string{"XmirrorLBDown", "XmirrorLBBGPSessionOffListener", "XmirrorBackendUnhealthy", "XmirrorNoBackend", "XmirrorCollectorSocketDrops",
		"XmirrorCollectorWriteErrors", "XmirrorCollectorDiskLow", "XmirrorSourceDown", "XmirrorSourceTargetDown", "XmirrorSourceInterfaceGone", "XmirrorCollectorDown", "XmirrorReloadRefused"} {
		if !strings.Contains(string(b), "alert: "+a+"\n") {
			t.Errorf("alerts.yml lacks %s", a)
		}
	}
}

// TestDashboard: the dashboard is JSON Grafana imports, and every query reads
// an xmirror metric.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string
		UID    string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || len(d.Panels) < 6 {
		t.Fatalf("dashboard %q: uid %q, %d panels", d.Title, d.UID, len(d.Panels))
	}
	// promtool checks the queries' PromQL as recording rules, with Grafana's
	// variables filled in.
	vars := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*")
	rules := "groups:\n  - name: dashboard\n    rules:\n"
	for i, p := range d.Panels {
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, "xmirror_") {
				t.Errorf("panel %q: query %q reads no xmirror metric", p.Title, tg.Expr)
			}
			q, _ := json.Marshal(vars.Replace(tg.Expr))
			rules += fmt.Sprintf("      - record: dashboard:panel%d\n        expr: %s\n", i, q)
		}
	}
	f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	os.WriteFile(f, []byte(rules), 0o644)
	if out, err := exec.Command(needTool(t, "promtool", "prometheus"), "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("dashboard queries: %v\n%s", err, out)
	}
}

type k8sContainer struct {
	Args            []string
	SecurityContext struct {
		Privileged   bool
		Capabilities struct{ Add, Drop []string }
	} `yaml:"securityContext"`
	ReadinessProbe struct {
		HTTPGet struct {
			Path string
			Port int
		} `yaml:"httpGet"`
	} `yaml:"readinessProbe"`
	VolumeMounts []struct {
		Name      string
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type daemonSet struct {
	Kind string
	Spec struct {
		Template struct {
			Spec struct {
				HostNetwork bool `yaml:"hostNetwork"`
				Containers  []k8sContainer
				Volumes     []struct {
					Name     string
					HostPath *struct{ Path string } `yaml:"hostPath"`
				}
			}
		}
	}
}

// TestKubernetesManifests checks the DaemonSets offline: host network, the
// measured capabilities and nothing privileged, bpffs for the LB, readiness on
// /healthz at the port the part serves it on.
func TestKubernetesManifests(t *testing.T) {
	for _, tc := range []struct {
		file      string
		caps      []string
		probePort int
		hostPaths []string
	}{
		{"kubernetes/xmirror-lb.yaml", []string{"BPF", "NET_ADMIN", "PERFMON"}, 9090, []string{"/sys/fs/bpf"}},
		{"kubernetes/xmirror-collect.yaml", nil, config.DefaultHealthPort, []string{"/var/lib/xmirror/pcap"}},
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		var ds daemonSet
		if err := yaml.Unmarshal(b, &ds); err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		ps := ds.Spec.Template.Spec
		if ds.Kind != "DaemonSet" || !ps.HostNetwork || len(ps.Containers) != 1 {
			t.Fatalf("%s: kind %s, hostNetwork %v, %d containers", tc.file, ds.Kind, ps.HostNetwork, len(ps.Containers))
		}
		c := ps.Containers[0]
		sc := c.SecurityContext
		if sc.Privileged || fmt.Sprint(sc.Capabilities.Drop) != "[ALL]" || fmt.Sprint(sc.Capabilities.Add) != fmt.Sprint(tc.caps) {
			t.Errorf("%s: privileged %v, drop %v, add %v; want drop [ALL], add %v", tc.file, sc.Privileged, sc.Capabilities.Drop, sc.Capabilities.Add, tc.caps)
		}
		if p := c.ReadinessProbe.HTTPGet; p.Path != "/healthz" || p.Port != tc.probePort {
			t.Errorf("%s: readiness %s:%d, want /healthz:%d", tc.file, p.Path, p.Port, tc.probePort)
		}
		var hp []string
		for _, v := range ps.Volumes {
			if v.HostPath != nil {
				hp = append(hp, v.HostPath.Path)
			}
		}
		if fmt.Sprint(hp) != fmt.Sprint(tc.hostPaths) {
			t.Errorf("%s: host paths %v, want %v", tc.file, hp, tc.hostPaths)
		}
	}
}

func loadExample(t *testing.T, name string) *config.Config {
	t.Helper()
	cfg, err := config.Load(filepath.Join("..", "config", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestExamplesWorkTogether: the per-role examples and the default configuration
// agree on the addresses and ports that connect the parts.
func TestExamplesWorkTogether(t *testing.T) {
	src, lb, col := loadExample(t, "source.yaml"), loadExample(t, "lb.yaml"), loadExample(t, "collector.yaml")
	def, err := config.Load("xmirror.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := lb.LoadBalancer
	if got := src.Sessions[0].Target; got != l.Listener.VIP.String() {
		t.Errorf("source target %s, LB VIP %s", got, l.Listener.VIP)
	}
	if !strings.HasSuffix(col.Collector.Listen, fmt.Sprintf(":%d", l.Backends[0].Port)) {
		t.Errorf("collector listens on %s, LB sends to port %d", col.Collector.Listen, l.Backends[0].Port)
	}
	if !l.HealthCheck.Enabled || !strings.HasSuffix(col.Collector.HealthListen, fmt.Sprintf(":%d", l.HealthCheck.Port)) {
		t.Errorf("LB health checks port %d (enabled %v), collector health_listen %s", l.HealthCheck.Port, l.HealthCheck.Enabled, col.Collector.HealthListen)
	}
	// The default file is the three in one.
	for name, pair := range map[string][2]any{
		"sessions":      {def.Sessions, src.Sessions},
		"filters":       {def.Filters, src.Filters},
		"load_balancer": {def.LoadBalancer, lb.LoadBalancer},
		"collector":     {def.Collector, col.Collector},
	} {
		a, _ := yaml.Marshal(pair[0])
		b, _ := yaml.Marshal(pair[1])
		if string(a) != string(b) {
			t.Errorf("deploy/xmirror.yaml %s differs from the example's:\n%s\n%s", name, a, b)
		}
	}
}

// TestHealthChecksWithShippedExamples runs the LB node and the two collectors of
// the shipped examples, as shipped (addresses, interfaces, health checks on),
// in network namespaces: the LB marks both collectors healthy, one stopped
// collector goes down, and the collectors' /metrics stays off the network.
func TestHealthChecksWithShippedExamples(t *testing.T) {
	labtest.RequireRoot(t)
	bin := labtest.XmirrorBinary(t)
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "lb", Addrs: []string{"192.168.0.147/24"}},
		netlab.HostSpec{Name: "c1", Addrs: []string{"192.168.0.6/24"}},
		netlab.HostSpec{Name: "c2", Addrs: []string{"192.168.0.12/24"}},
	)
	examples, _ := filepath.Abs(filepath.Join("..", "config", "examples"))
	out := t.TempDir()
	cols := map[string]*netlab.Proc{}
	for _, h := range []string{"c1", "c2"} {
		p, err := lab.Host(h).Start(bin, "collect", "--config", filepath.Join(examples, "collector.yaml"), "--out", filepath.Join(out, h))
		if err != nil {
			t.Fatal(err)
		}
		cols[h] = p
	}
	pin := fmt.Sprintf("/sys/fs/bpf/xmirror-deploy-test-%d", os.Getpid())
	lbProc, err := lab.Host("lb").Start(bin, "lb", "--config", filepath.Join(examples, "lb.yaml"), "--pin-path", pin, "--detach-on-exit")
	if err != nil {
		t.Fatal(err)
	}
	defer lbProc.Stop()
	status := func() string {
		s, _ := lab.Host("lb").Run(bin, "lb", "status", "--pin-path", pin, "--interval", "10ms")
		return s
	}
	waitFor := func(what string, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			s := status()
			if ok(s) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20 s; lb status:\n%s\nlb log:\n%s\nc1 log:\n%s", what, s, lbProc.Output(), cols["c1"].Output())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	row := func(s, backend string) string {
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, backend+" ") {
				return l
			}
		}
		return ""
	}
	waitFor("both collectors healthy", func(s string) bool {
		return strings.Contains(row(s, "collector-01"), " healthy ") && strings.Contains(row(s, "collector-02"), " healthy ")
	})
	// /metrics is on the collector's loopback only: the LB node cannot read it.
	if o, err := lab.Host("lb").Run("bash", "-c", "exec 3<>/dev/tcp/192.168.0.6/9090"); err == nil {
		t.Errorf("the collector's metrics port is reachable from the LB node: %s", o)
	}
	// What Prometheus scrapes from the LB and a collector: every family with
	// HELP and TYPE before its samples, and the build info.
	for host, addr := range map[string]string{"lb": "127.0.0.1:9090", "c1": "127.0.0.1:9090"} {
		code, body, err := lab.Host(host).Get(context.Background(), addr, "/metrics")
		if err != nil || code != 200 {
			t.Fatalf("%s /metrics: %d %v", host, code, err)
		}
		checkMetadata(t, host, string(body))
	}
	cols["c2"].Stop()
	waitFor("a stopped collector marked down", func(s string) bool {
		return strings.Contains(row(s, "collector-02"), " down ") && strings.Contains(row(s, "collector-01"), " healthy ")
	})
}

// checkMetadata: every sample's family has exactly one HELP (with text) and one
// TYPE line before it, and xmirror_build_info is there.
func checkMetadata(t *testing.T, who, body string) {
	t.Helper()
	helps, types, kinds := map[string]int{}, map[string]int{}, map[string]string{}
	samples := 0
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "# HELP "):
			helps[f[2]]++
			if len(f) < 4 {
				t.Errorf("%s: HELP without text: %q", who, line)
			}
			if generic := "xmirror " + strings.ReplaceAll(f[2], "_", " ") + "."; strings.HasPrefix(f[2], "xmirror_") && strings.Join(f[3:], " ") == generic {
				t.Errorf("%s: %s has no HELP text of its own: add one in internal/telemetry/metadata.go", who, f[2])
			}
		case strings.HasPrefix(line, "# TYPE "):
			types[f[2]]++
			kinds[f[2]] = f[3]
		case line != "" && line[0] != '#':
			fam := line[:strings.IndexAny(line, "{ ")]
			// a histogram's or summary's _bucket, _sum and _count samples
			// belong to its family
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(fam, suffix); ok && (kinds[base] == "histogram" || kinds[base] == "summary") {
					fam = base
				}
			}
			if helps[fam] != 1 || types[fam] != 1 {
				t.Errorf("%s: %s sampled after %d HELP and %d TYPE lines", who, fam, helps[fam], types[fam])
			}
			samples++
		}
	}
	if !strings.Contains(body, "\nxmirror_build_info{version=") || samples < 10 {
		t.Errorf("%s: no xmirror_build_info, or only %d samples:\n%s", who, samples, body)
	}
}

// TestPartsRunWithUnitCapabilities runs each part of the shipped examples as an
// unprivileged user (65534) holding exactly the capabilities its unit grants
// (AmbientCapabilities=), the way systemd starts it: each becomes healthy.
func TestPartsRunWithUnitCapabilities(t *testing.T) {
	labtest.RequireRoot(t)
	needTool(t, "setpriv", "util-linux")
	bin := labtest.XmirrorBinary(t)
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "source", Addrs: []string{"192.168.0.230/24"}},
		netlab.HostSpec{Name: "lb", Addrs: []string{"192.168.0.147/24"}},
		netlab.HostSpec{Name: "c1", Addrs: []string{"192.168.0.6/24"}},
	)
	examples, _ := filepath.Abs(filepath.Join("..", "config", "examples"))
	pins := fmt.Sprintf("/sys/fs/bpf/xmirror-captest-%d", os.Getpid())
	// Directories the unprivileged user may write: the output directory as
	// StateDirectory= gives it, the pin directory as the lb unit's
	// ExecStartPre=+ lines make it.
	out := filepath.Join(os.TempDir(), fmt.Sprintf("xmirror-captest-%d", os.Getpid()))
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(out, 65534, 65534)
	defer os.RemoveAll(out)
	defer os.RemoveAll(pins)
	runStartPre(t, "xmirror-lb.service", pins)
	for _, tc := range []struct {
		host, unit string
		args       []string
	}{
		{"c1", "xmirror-collect.service", []string{"collect", "--config", filepath.Join(examples, "collector.yaml"), "--out", out}},
		{"lb", "xmirror-lb.service", []string{"lb", "--config", filepath.Join(examples, "lb.yaml"), "--pin-path", pins + "/lb", "--detach-on-exit"}},
		{"source", "xmirror-source.service", []string{"source", "--config", filepath.Join(examples, "source.yaml")}},
	} {
		caps := unitCaps(t, tc.unit)
		args := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=" + caps, "--ambient-caps=" + caps, bin}, tc.args...)
		if caps == "" {
			args = append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin}, tc.args...)
		}
		p, err := lab.Host(tc.host).Start("setpriv", args...)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, _, err := lab.Host(tc.host).Get(context.Background(), "127.0.0.1:9090", "/healthz")
			if err == nil && code == 200 {
				break
			}
			select {
			case <-p.Done():
				t.Fatalf("%s with %q exited:\n%s", tc.args[0], caps, p.Output())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s with %q not healthy within 20 s:\n%s", tc.args[0], caps, p.Output())
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("%s runs as uid 65534 with %q", tc.args[0], caps)
		_, body, err := lab.Host(tc.host).Get(context.Background(), "127.0.0.1:9090", "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		checkMetadata(t, tc.args[0], string(body))
	}
}

// unitText is a shipped unit file's text.
func unitText(t *testing.T, unit string) string {
	b, err := os.ReadFile(filepath.Join("systemd", unit))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runStartPre runs the privileged ExecStartPre=+ lines of unit as systemd
// would before the start, with the xmirror user as 65534 and the default pin
// directory as pins. /sys/fs/bpf gets the mode systemd mounts it with (0700)
// first, so the lines are what lets the user in, and its mode is put back
// when the test ends.
func runStartPre(t *testing.T, unit, pins string) {
	const root = "/sys/fs/bpf"
	st, err := os.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(root, st.Mode()) })
	if err := os.Chmod(root, 0o700); err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("-o xmirror", "-o 65534", "-g xmirror", "-g 65534", "xmirror:xmirror", "65534:65534", root+"/xmirror", pins)
	for _, line := range strings.Split(unitText(t, unit), "\n") {
		cmd, ok := strings.CutPrefix(line, "ExecStartPre=+")
		if !ok {
			continue
		}
		args := strings.Fields(r.Replace(cmd))
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: ExecStartPre=+%s: %v: %s", unit, cmd, err, out)
		}
	}
}

// unitCaps turns a unit's AmbientCapabilities= into setpriv's "+bpf,+net_admin".
func unitCaps(t *testing.T, unit string) string {
	for _, line := range strings.Split(unitText(t, unit), "\n") {
		if v, ok := strings.CutPrefix(line, "AmbientCapabilities="); ok {
			var caps []string
			for _, c := range strings.Fields(v) {
				caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
			return strings.Join(caps, ",")
		}
	}
	t.Fatalf("%s has no AmbientCapabilities=", unit)
	return ""
}

// TestDockerfile checks offline what `make docker` relies on (there is no
// Docker engine to build with here): version and commit as build arguments
// into the binary, a volume for the capture files, and no --privileged advice.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{"ARG VERSION", "ARG COMMIT", "-X main.version=${VERSION} -X main.commit=${COMMIT}",
		"VOLUME /var/lib/xmirror/pcap", "--cap-add BPF --cap-add NET_ADMIN --cap-add PERFMON", "--cap-drop ALL"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if strings.Contains(df, "--privileged") {
		t.Error("Dockerfile still advises --privileged")
	}
	mk, _ := os.ReadFile("../Makefile")
	if !strings.Contains(string(mk), "--build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT)") {
		t.Error("make docker does not pass VERSION and COMMIT")
	}
	di, err := os.ReadFile("../.dockerignore")
	if err != nil || !strings.Contains(string(di), ".git\n") {
		t.Errorf(".dockerignore: %v", err)
	}
}

// alertTest is one `promtool test rules` case against monitoring/alerts.yml:
// the input series as scraped every 15 s (promtool's series notation;
// "stale" where a scrape no longer has the series), and the alerts that
// must be firing at the end, as ALERTS series.
type alertTest struct {
	name   string
	series map[string]string
	at     string   // evaluation time
	firing []string // ALERTS{...} series expected, "" for none
}

// runAlertTest runs c through promtool and reports its complaint.
func runAlertTest(t *testing.T, c alertTest) {
	t.Helper()
	rules, err := filepath.Abs("monitoring/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rule_files: [%q]\nevaluation_interval: 15s\ntests:\n  - interval: 15s\n    input_series:\n", rules)
	for s, v := range c.series {
		fmt.Fprintf(&b, "      - series: %q\n        values: %q\n", s, v)
	}
	fmt.Fprintf(&b, "    promql_expr_test:\n      - expr: 'ALERTS{alertstate=\"firing\"}'\n        eval_time: %s\n        exp_samples:\n", c.at)
	for _, a := range c.firing {
		fmt.Fprintf(&b, "          - labels: %q\n            value: 1\n", a)
	}
	if len(c.firing) == 0 {
		b.WriteString("          []\n")
	}
	f := filepath.Join(t.TempDir(), "alerts_test.yml")
	os.WriteFile(f, []byte(b.String()), 0o644)
	if out, err := exec.Command(needTool(t, "promtool", "prometheus"), "test", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("%s: %v\n%s\n%s", c.name, err, out, b.String())
	}
}

// flapping gives n scrapes (15 s apart) of a series present every other
// scrape (odd: the other ones) with value v, stale in between: a label
// whose value changes from scrape to scrape makes two such series.
func flapping(n int, odd bool, v string) string {
	var s []string
	for i := 0; i < n; i++ {
		if (i%2 == 1) == odd {
			s = append(s, v)
		} else {
			s = append(s, "stale")
		}
	}
	return strings.Join(s, " ")
}

// TestAlertsFire: the alerts fire on what the parts export when things go
// wrong.
func TestAlertsFire(t *testing.T) {
	const lb, col = `job="xmirror-lb",instance="lb1:9090"`, `job="xmirror-collect",instance="c1:9090"`
	for _, c := range []alertTest{
		{
			// A session that keeps failing (connection refused, a wrong
			// ASN) goes from state to state as GoBGP dials again every few
			// seconds; the state is a label of xmirror_lb_bgp_session_up, so
			// each state's series lived a few seconds and the alert's 2
			// minutes never passed.
			name: "bgp session down, its state changing",
			series: map[string]string{
				`xmirror_lb_bgp_session_up{` + lb + `,peer="10.0.0.253",asn="65000",state="active"}`: flapping(40, false, "0"),
				`xmirror_lb_bgp_session_up{` + lb + `,peer="10.0.0.253",asn="65000",state="idle"}`:   flapping(40, true, "0"),
			},
			at:     "9m",
			firing: []string{`ALERTS{alertname="XmirrorLBBGPSessionDown",alertstate="firing",severity="warning",` + lb + `,peer="10.0.0.253",asn="65000"}`},
		},
		{
			// receive: xdp, which the socket drops' alert recommends,
			// loses what it cannot keep up with as ring_full.
			name: "xdp collector behind",
			series: map[string]string{
				`xmirror_collector_drops_total{` + col + `,reason="ring_full"}`: "0+1000x60",
			},
			at:     "14m",
			firing: []string{`ALERTS{alertname="XmirrorCollectorSocketDrops",alertstate="firing",severity="warning",` + col + `,reason="ring_full"}`},
		},
	} {
		runAlertTest(t, c)
	}
}

// debLifecycle is run by TestDebLifecycle in a mount namespace of its own:
// a copy-on-write view of this machine's root (overlay on tmpfs) where the
// package is installed, upgraded, removed and purged as an operator would,
// so that nothing of it reaches the machine. /sys (with its bpffs) is the
// machine's. Each step prints key=value lines.
const debLifecycle = `set -eu
mount -t tmpfs tmpfs "$W"
mkdir "$W/u" "$W/w" "$W/r"
mount -t overlay overlay -o lowerdir=/,upperdir="$W/u",workdir="$W/w" "$W/r"
mount -t proc proc "$W/r/proc"
mount --rbind /sys "$W/r/sys"
mount --rbind /dev "$W/r/dev"
mount -t tmpfs tmpfs "$W/r/run"
mount -t tmpfs tmpfs "$W/r/tmp"
cp "$DEB" "$W/r/tmp/xmirror.deb"
cp "$CFG" "$W/r/tmp/edited.yaml"
exec chroot "$W/r" /bin/sh -eu -c '
	dpkg -i --force-confold /tmp/xmirror.deb >/dev/null </dev/null
	echo "installed_conf=$(stat -c "%U:%G %a" /etc/xmirror/xmirror.yaml)"
	echo "installed_user=$(getent passwd xmirror | cut -d: -f1,6)"
	cp /tmp/edited.yaml /etc/xmirror/xmirror.yaml
	dpkg -i --force-confold /tmp/xmirror.deb >/dev/null </dev/null
	echo "upgraded_conf=$(stat -c "%U:%G %a" /etc/xmirror/xmirror.yaml) $(cmp -s /tmp/edited.yaml /etc/xmirror/xmirror.yaml && echo kept)"
	dpkg --remove xmirror >/dev/null </dev/null
	echo "removed_bin=$(ls /usr/bin/xmirror 2>/dev/null || echo gone) conf=$(ls /etc/xmirror/xmirror.yaml)"
	dpkg --purge xmirror >/dev/null </dev/null
	echo "purged=$(ls -d /etc/xmirror /var/lib/xmirror 2>/dev/null || true)$(getent passwd xmirror || true)$(getent group xmirror || true)$(dpkg-statoverride --list | grep xmirror || true)"
'
`

// TestDebLifecycle installs the .deb with dpkg as `apt install ./xmirror_*.deb`
// does, edits its configuration, installs it again (an upgrade), removes and
// purges it, in a copy-on-write view of this machine's root, with a load
// balancer stopped as `systemctl stop xmirror-lb` leaves it: its program
// attached and pinned.
func TestDebLifecycle(t *testing.T) {
	labtest.RequireRoot(t)
	needTool(t, "dpkg-deb", "dpkg")
	needTool(t, "unshare", "util-linux")
	bin := labtest.XmirrorBinary(t)
	work := t.TempDir()
	b, err := exec.Command("deb/build.sh", bin, "v1.2.3", filepath.Join(work, "dist")).CombinedOutput()
	if err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	deb := strings.TrimSpace(string(b))

	lab := labtest.ForTest(t, netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24"}})
	h := lab.Host("lb")
	pins := fmt.Sprintf("/sys/fs/bpf/xmirror-debtest-%d", os.Getpid())
	defer os.RemoveAll(pins)
	cfg := filepath.Join(work, "xmirror.yaml")
	os.WriteFile(cfg, []byte("load_balancer:\n  listener: {vip: 10.0.0.1, interfaces: [eth0]}\n  backends: [{address: 10.0.0.2}]\n  pin_path: "+pins+
		"\nmetrics: {listen: 127.0.0.1:9190}\n"), 0o644)
	lb, err := h.Start(bin, "lb", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(pins, "lb_active")); err == nil {
			if out, _ := h.Run("ip", "link", "show", "dev", "eth0"); strings.Contains(out, "xdp") {
				break
			}
		}
		select {
		case <-lb.Done():
			t.Fatalf("lb exited:\n%s", lb.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("lb not attached within 20 s:\n%s", lb.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := lb.Stop(); err != nil {
		t.Fatalf("lb stop: %v\n%s", err, lb.Output())
	}
	if out, _ := h.Run("ip", "link", "show", "dev", "eth0"); !strings.Contains(out, "xdp") {
		t.Fatalf("a stopped lb should leave its program attached:\n%s", out)
	}

	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", debLifecycle)
	cmd.Env = append(os.Environ(), "W="+filepath.Join(work, "root"), "DEB="+deb, "CFG="+cfg)
	os.Mkdir(filepath.Join(work, "root"), 0o755)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install, remove, purge: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	t.Logf("%s", out)
	for k, want := range map[string]string{
		// The configuration may hold a BGP password: not for every user.
		"installed_conf": "root:xmirror 640",
		"installed_user": "xmirror:/var/lib/xmirror",
		"upgraded_conf":  "root:xmirror 640 kept",
		"removed_bin":    "gone conf=/etc/xmirror/xmirror.yaml",
		"purged":         "",
	} {
		if got[k] != want {
			t.Errorf("%s: %q, want %q", k, got[k], want)
		}
	}
	// Removing the package took the stopped lb's program off the interface
	// and its pins away: nothing left could detach it.
	if o, _ := h.Run("ip", "link", "show", "dev", "eth0"); strings.Contains(o, "xdp") {
		t.Errorf("after dpkg --remove the lb's XDP program is still attached:\n%s", o)
	}
	if _, err := os.Stat(filepath.Join(pins, "lb_active")); err == nil {
		t.Errorf("after dpkg --remove the lb's pins are still under %s", pins)
	}
}

// TestLBRestartsAsUnitUser restarts the lb as the unit runs it (uid 65534,
// the unit's capabilities, the pin directory its ExecStartPre=+ lines
// make): every restart took the pinned link over by opening its program by
// id, which takes CAP_SYS_ADMIN, so `systemctl restart xmirror-lb` (and an
// upgrade's restart) failed with "open the program of the pinned xdp link
// of eth0: get program by id: operation not permitted", again every 2 s,
// while the stopped run's program forwarded with frozen tables. Then an
// operator who ran `xmirror lb` as root leaves pins only root can open: the
// unit said the interface ran a program "not pinned under" the pin path it
// is pinned under; its ExecStartPre=+ lines now give the pins to the user.
func TestLBRestartsAsUnitUser(t *testing.T) {
	labtest.RequireRoot(t)
	needTool(t, "setpriv", "util-linux")
	bin := labtest.XmirrorBinary(t)
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "lb", Addrs: []string{"192.168.0.147/24"}})
	h := lab.Host("lb")
	examples, _ := filepath.Abs(filepath.Join("..", "config", "examples"))
	pins := fmt.Sprintf("/sys/fs/bpf/xmirror-unitrestart-%d", os.Getpid())
	defer func() {
		exec.Command(bin, "lb", "detach", "--pin-path", pins).Run()
		os.RemoveAll(pins)
	}()
	args := []string{"lb", "--config", filepath.Join(examples, "lb.yaml"), "--pin-path", pins}
	caps := unitCaps(t, "xmirror-lb.service")
	asUnit := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=" + caps, "--ambient-caps=" + caps, bin}, args...)
	run := func(who string, name string, arg ...string) {
		t.Helper()
		p, err := h.Start(name, arg...)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(p.Output(), "load balancer running") {
			select {
			case <-p.Done():
				t.Fatalf("%s: lb exited:\n%s", who, p.Output())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: lb not running within 20 s:\n%s", who, p.Output())
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := p.Stop(); err != nil {
			t.Fatalf("%s: stop: %v\n%s", who, err, p.Output())
		}
	}
	// A pin_path of its own without the unit's lines changed: the start
	// said only "create pin path: mkdir ...: permission denied".
	other := append(slices.Clone(asUnit), "--pin-path", pins+"-other")
	if out, err := h.Run("setpriv", other...); err == nil || !strings.Contains(out, "ExecStartPre") {
		t.Errorf("lb as the unit's user with another pin path: %v, want the unit's lines named:\n%s", err, out)
	}
	runStartPre(t, "xmirror-lb.service", pins)
	run("start as the unit's user", "setpriv", asUnit...)
	run("restart as the unit's user", "setpriv", asUnit...)

	run("as root", bin, args...)
	// With the directory alone given to the user (the unit's lines before),
	// the start says why it cannot take the program over.
	if err := os.Chown(pins, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	out, err := h.Run("setpriv", asUnit...)
	if err == nil || !strings.Contains(out, "cannot be opened") || !strings.Contains(out, "pin owner 0") {
		t.Errorf("lb as the unit's user on root's pins: %v, want a refusal naming the pins' owner:\n%s", err, out)
	}
	runStartPre(t, "xmirror-lb.service", pins)
	run("as the unit's user after a root run", "setpriv", asUnit...)

	// The unit's ExecStopPost= (commented out: every stop detaches) runs
	// as its user too. It removed the pins, then failed on the directory,
	// which ExecStartPre=+ made in root's /sys/fs/bpf: "remove pin path:
	// ... permission denied", exit 1, and the stop counted as failed.
	detach := append(asUnit[:len(asUnit)-len(args)], "lb", "detach", "--pin-path", pins)
	if out, err := h.Run("setpriv", detach...); err != nil || !strings.Contains(out, "detached") {
		t.Errorf("lb detach as the unit's user: %v\n%s", err, out)
	}
	if entries, _ := os.ReadDir(pins); len(entries) != 0 {
		t.Errorf("lb detach as the unit's user left %d pins", len(entries))
	}
}
