// SPDX-License-Identifier: Apache-2.0

package telemetry

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Sample is one line of the Prometheus text format, as the parts serve it on
// /metrics. Everything that reads /metrics (`xmirror source status`, the demo,
// the bench, tests) parses it here.
type Sample struct {
	Name   string
	Labels string // as written, without the braces: `session="mirror-session-01"`
	Value  float64
}

func (s Sample) String() string {
	v := strconv.FormatFloat(s.Value, 'f', -1, 64)
	if s.Labels == "" {
		return s.Name + " " + v
	}
	return s.Name + "{" + s.Labels + "} " + v
}

// Label is the unquoted value of the label key, "" when the sample has none.
func (s Sample) Label(key string) string {
	rest := s.Labels
	for rest != "" {
		name, after, ok := strings.Cut(rest, "=")
		if !ok || len(after) == 0 || after[0] != '"' {
			return ""
		}
		end := closingQuote(after)
		if end < 0 {
			return ""
		}
		if strings.TrimSpace(name) == key {
			v, err := strconv.Unquote(after[:end+1])
			if err != nil {
				return ""
			}
			return v
		}
		rest = strings.TrimPrefix(after[end+1:], ",")
	}
	return ""
}

// closingQuote is the index of the quote that ends the string s starts with.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// ParseText reads the Prometheus text exposition format. Comments and lines it
// cannot read are skipped: readers want counters, they do not validate exporters.
func ParseText(r io.Reader) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if s, ok := parseSample(sc.Text()); ok {
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read metrics: %w", err)
	}
	return out, nil
}

func parseSample(line string) (Sample, bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return Sample{}, false
	}
	var s Sample
	rest := line
	if i := strings.IndexByte(line, '{'); i >= 0 {
		// Label values may hold '}' inside quotes: find the closing brace outside them.
		end, inQuote := -1, false
		for j := i + 1; j < len(line); j++ {
			switch c := line[j]; {
			case c == '\\' && inQuote:
				j++
			case c == '"':
				inQuote = !inQuote
			case c == '}' && !inQuote:
				end = j
			}
			if end >= 0 {
				break
			}
		}
		if end < 0 {
			return Sample{}, false
		}
		s.Name, s.Labels, rest = line[:i], line[i+1:end], line[end+1:]
	} else {
		sp := strings.IndexAny(line, " \t")
		if sp < 0 {
			return Sample{}, false
		}
		s.Name, rest = line[:sp], line[sp:]
	}
	fields := strings.Fields(rest)
	if s.Name == "" || len(fields) == 0 || strings.ContainsAny(s.Name, " \t") {
		return Sample{}, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || math.IsNaN(v) {
		return Sample{}, false
	}
	s.Value = v
	return s, true
}

// Sum adds the values of every sample called name whose labels contain each of
// the given `key="value"` pairs.
func Sum(samples []Sample, name string, labels ...string) float64 {
	var t float64
outer:
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(s.Labels, l) {
				continue outer
			}
		}
		t += s.Value
	}
	return t
}
