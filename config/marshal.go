// SPDX-License-Identifier: Apache-2.0

package config

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"
)

// Marshal writes the configuration as YAML in the form Parse reads: protocols by
// name, port ranges as all/N/N-M, durations as 2s, sizes as 100MiB, the mark in
// hex. Call it after ApplyDefaults (Load does) to print the effective config.
func (c *Config) Marshal() ([]byte, error) {
	var root yaml.Node
	if err := root.Encode(c); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	prettify(&root)
	if src := child(&root, "source"); src != nil {
		if mark := child(src, "mark"); mark != nil && c.Source != nil {
			mark.Value = fmt.Sprintf("0x%08x", c.Source.Mark)
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

// prettify writes short lists of scalars ([eth0]) and rules (one line each) in
// flow style, which reads like the examples.
func prettify(n *yaml.Node) {
	if n.Kind == yaml.SequenceNode {
		flat := true
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				flat = false
			}
		}
		if flat {
			n.Style = yaml.FlowStyle
		}
		for _, c := range n.Content {
			if c.Kind == yaml.MappingNode && shallow(c) {
				c.Style = yaml.FlowStyle
			}
		}
	}
	for _, c := range n.Content {
		prettify(c)
	}
}

// shallow reports whether a mapping holds only scalars and lists of scalars.
func shallow(n *yaml.Node) bool {
	for _, c := range n.Content {
		if c.Kind == yaml.MappingNode {
			return false
		}
		if c.Kind == yaml.SequenceNode {
			for _, e := range c.Content {
				if e.Kind != yaml.ScalarNode {
					return false
				}
			}
		}
	}
	return true
}

// child is the value under key in a mapping node, nil when absent.
func child(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
