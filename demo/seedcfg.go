// SPDX-License-Identifier: Apache-2.0

package demo

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/xmirror/xmirror/config"
)

// The seed's hosts. Their names and addresses are those of the seed document;
// every host's interface is eth0, so seed.yaml's `sources: [eth0]` and
// `interfaces: [eth0]` apply as written.
const (
	HostSource   = "ECS-source"
	HostTest     = "ECS-test"
	HostTarget01 = "ECS-target-01"
	HostTarget02 = "ECS-target-02"
	HostLB       = "ELB-A"
)

// seedHost is one host of the topology.
type seedHost struct {
	Name string
	Addr string // on 192.168.0.0/24
	// XDPSender marks ELB-A: the load balancer sends with XDP_TX, and a veth drops
	// such frames unless the receiving end runs XDP (netlab.HostSpec.PeerXDP).
	XDPSender bool
}

var seedHosts = []seedHost{
	{Name: HostSource, Addr: "192.168.0.230"},
	{Name: HostTest, Addr: "192.168.0.161"},
	{Name: HostTarget01, Addr: "192.168.0.6"},
	{Name: HostTarget02, Addr: "192.168.0.12"},
	{Name: HostLB, Addr: "192.168.0.147", XDPSender: true},
}

// Targets are the collector hosts, in the seed's order.
var Targets = []string{HostTarget01, HostTarget02}

// CheckConfig tells whether a configuration can run as the demo: valid, and
// describing the seed's network (addresses of the load balancer and targets).
func CheckConfig(b []byte) error {
	cfg, err := config.Parse(b)
	if err != nil {
		return err
	}
	return checkSeed(cfg)
}

// checkSeed makes sure the configuration describes the topology the demo builds:
// the demo's hosts carry the seed's addresses, so a file that names others would
// send the mirror nowhere.
func checkSeed(c *config.Config) error {
	addrOf := map[string]netip.Addr{}
	for _, h := range seedHosts {
		addrOf[h.Name] = netip.MustParseAddr(h.Addr)
	}
	if len(c.Sessions) == 0 {
		return fmt.Errorf("no sessions")
	}
	lb := c.LoadBalancer
	if lb == nil || len(lb.Backends) == 0 {
		return fmt.Errorf("no load_balancer with backends")
	}
	if c.Collector == nil {
		return fmt.Errorf("no collector section")
	}
	if lb.Listener.VIP != addrOf[HostLB] {
		return fmt.Errorf("load_balancer.listener.vip is %s, the demo's %s is %s", lb.Listener.VIP, HostLB, addrOf[HostLB])
	}
	for i, b := range lb.Backends {
		if b.Address != addrOf[HostTarget01] && b.Address != addrOf[HostTarget02] {
			return fmt.Errorf("load_balancer.backends[%d].address %s is not one of the demo's targets (%s %s, %s %s)",
				i, b.Address, HostTarget01, addrOf[HostTarget01], HostTarget02, addrOf[HostTarget02])
		}
	}
	for i, s := range c.Sessions {
		host, _, _ := strings.Cut(s.Target, ":")
		if s.Enabled && host != addrOf[HostLB].String() {
			return fmt.Errorf("sessions[%d].target is %s, the demo's load balancer %s is %s", i, s.Target, HostLB, addrOf[HostLB])
		}
	}
	return nil
}

// ruleString is one filter rule as a sentence.
func ruleString(r config.Rule) string {
	return fmt.Sprintf("%d: %s %s %s from %s port %s to %s port %s", r.Priority, r.Action, r.EtherType,
		r.Protocol, r.Source, r.SourcePorts, r.Destination, r.DestinationPorts)
}

// targetOf names the demo host that has address addr.
func targetOf(addr string) string {
	for _, h := range seedHosts {
		if h.Addr == addr {
			return h.Name
		}
	}
	return addr
}

// edit is one change to the seed: the value at a key path, a YAML scalar.
type edit struct {
	path  string // dotted: "load_balancer.health_check.enabled"
	value string
}

// deriveConfig applies edits to a YAML document, keeping everything else (order,
// comments) as written, and creating the mappings a path needs.
func deriveConfig(seed []byte, edits ...edit) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(seed, &doc); err != nil {
		return nil, fmt.Errorf("parse seed configuration: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("seed configuration is not a mapping")
	}
	for _, e := range edits {
		if err := setPath(doc.Content[0], strings.Split(e.path, "."), e.value); err != nil {
			return nil, fmt.Errorf("set %s: %w", e.path, err)
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("write configuration: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("write configuration: %w", err)
	}
	return buf.Bytes(), nil
}

func setPath(m *yaml.Node, path []string, value string) error {
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("%s is not a mapping", path[0])
	}
	// Flow style (`{a: 1}`) mappings would put a new nested block inside braces;
	// block style is always valid.
	m.Style &^= yaml.FlowStyle
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != path[0] {
			continue
		}
		v := m.Content[i+1]
		if len(path) == 1 {
			*v = yaml.Node{Kind: yaml.ScalarNode, Value: value}
			return nil
		}
		if v.Kind == yaml.ScalarNode && (v.Tag == "!!null" || v.Value == "") {
			*v = yaml.Node{Kind: yaml.MappingNode}
		}
		return setPath(v, path[1:], value)
	}
	key := &yaml.Node{Kind: yaml.ScalarNode, Value: path[0]}
	if len(path) == 1 {
		m.Content = append(m.Content, key, &yaml.Node{Kind: yaml.ScalarNode, Value: value})
		return nil
	}
	child := &yaml.Node{Kind: yaml.MappingNode}
	m.Content = append(m.Content, key, child)
	return setPath(child, path[1:], value)
}
