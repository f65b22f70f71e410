// SPDX-License-Identifier: Apache-2.0

package config

import (
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// typeKeys lists every YAML key path the Config type has (sequence items as
// []), true for keys holding a value rather than a mapping.
func typeKeys(t reflect.Type, prefix string, out map[string]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct && !isValue(t.Elem()) {
			prefix += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || isValue(t) {
		return
	}
	out[prefix] = false
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		p := name
		if prefix != "" {
			p = prefix + "." + name
		}
		out[p] = true
		typeKeys(f.Type, p, out)
	}
}

// isValue reports whether a struct type is written as one scalar.
func isValue(t reflect.Type) bool {
	return t == reflect.TypeOf(netip.Prefix{}) || t == reflect.TypeOf(netip.Addr{}) || t == reflect.TypeOf(PortRange{})
}

// nodeKeys lists every key path present in a YAML document.
func nodeKeys(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			nodeKeys(c, prefix, out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			out[prefix+"[]"] = true
			nodeKeys(c, prefix+"[]", out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if prefix != "" {
				p = prefix + "." + p
			}
			out[p] = true
			nodeKeys(n.Content[i+1], p, out)
		}
	}
}

// TestFullExampleHasEveryKey keeps examples/full.yaml and docs/configuration.md
// complete: every key of the Config type must appear in both.
func TestFullExampleHasEveryKey(t *testing.T) {
	want := map[string]bool{}
	typeKeys(reflect.TypeOf(Config{}), "", want)
	data, err := os.ReadFile("examples/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	nodeKeys(&root, "", got)
	if len(want) < 60 {
		t.Fatalf("found only %d keys in the Config type: %v", len(want), want)
	}
	// Inbound and outbound rules share one type; the example shows all keys on inbound.
	var missing []string
	delete(want, "")
	for k := range want {
		if _, ok := got[k]; !ok && !strings.Contains(k, ".outbound[].") {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("examples/full.yaml lacks keys: %v", missing)
	}
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	// A key is documented as `leaf` in its section's table, or as `parent.leaf`.
	for k, leafKey := range want {
		if !leafKey {
			continue
		}
		parts := strings.Split(strings.ReplaceAll(k, "[]", ""), ".")
		leaf := "`" + parts[len(parts)-1] + "`"
		dotted := leaf
		if len(parts) > 1 {
			dotted = "`" + strings.Join(parts[len(parts)-2:], ".") + "`"
		}
		if !strings.Contains(string(doc), leaf) && !strings.Contains(string(doc), dotted) {
			t.Errorf("docs/configuration.md does not document %s", k)
		}
	}
}
