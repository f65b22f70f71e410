// SPDX-License-Identifier: Apache-2.0

package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the file at path (see ReadFile for what it refuses) and parses it:
// see Parse.
func Load(path string) (*Config, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes a YAML configuration, validates it and applies defaults. On
// failure the error is an Errors listing every problem with its path and line.
// An empty document is a valid, empty configuration: each subcommand checks
// that the sections it needs are there.
func Parse(data []byte) (*Config, error) {
	d := &decoder{lines: map[string]int{}, budget: maxNodes}
	cfg := d.document(data)
	if cfg == nil {
		return nil, d.errs.sorted()
	}
	errs := d.errs
	// Validation still runs when decoding found problems so that one pass reports
	// everything, but a field that failed to decode is not reported twice.
	for _, e := range validate(cfg, d.lineOf) {
		if !d.failed(e.Path) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	ApplyDefaults(cfg)
	return cfg, nil
}

// maxNodes bounds the work per document: aliases can make a small file expand
// into an enormous tree ("billion laughs").
const maxNodes = 200000

type decoder struct {
	errs   Errors
	lines  map[string]int // field path -> YAML line
	budget int
	bad    []string // paths that failed to decode
	// aliasLine is the line of the alias (*name) being decoded, 0 outside
	// one: the fields of sessions[1] written as *s are on that line, not on
	// the anchor's, where sessions[0] is.
	aliasLine int
}

func (d *decoder) errorf(path string, line int, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Line: d.at(line), Msg: fmt.Sprintf(format, args...)})
	d.bad = append(d.bad, path)
}

// at is line, or the line of the alias it is decoded through.
func (d *decoder) at(line int) int {
	if d.aliasLine != 0 && line != 0 {
		return d.aliasLine
	}
	return line
}

// throughAlias decodes n with decode, at the alias's line when n is one
// (and not inside another alias, whose line stays).
func (d *decoder) throughAlias(n *yaml.Node, decode func()) {
	if n.Kind == yaml.AliasNode && d.aliasLine == 0 {
		d.aliasLine = n.Line
		defer func() { d.aliasLine = 0 }()
	}
	decode()
}

// failed reports whether path, or a field containing it, already has an error.
func (d *decoder) failed(path string) bool {
	for _, b := range d.bad {
		if path == b || strings.HasPrefix(path, b+".") || strings.HasPrefix(path, b+"[") {
			return true
		}
	}
	return false
}

// lineOf gives the line of path, else of the nearest enclosing field that has one
// (a missing key is reported at the line of the mapping that lacks it).
func (d *decoder) lineOf(path string) int {
	return lineLookup(d.lines, path)
}

func lineLookup(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems are the errors of yaml.v3's parser (parserc.go), as
// opposed to its scanner's.
var yamlParserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// yamlProblem is the message and line of a YAML library error.
func yamlProblem(err error) (msg string, line int) {
	msg = err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if yamlParserProblems[msg] {
		// yaml.v3 numbers the lines of its parser's errors from 0 (its
		// scanner's from 1), and leaves the line out when it is 0.
		line++
	}
	return msg, line
}

// yamlBlockProblems are the parser's errors that yaml.v3 reports at the
// line where the enclosing list or mapping starts, not at the mistake (a
// key indented one space off, forty lines down). For the block ones (true)
// the file cut short before the mistake parses, or fails otherwise, and
// cut at or after it fails with the same message; the flow ones (false)
// fail so as well when cut inside a valid multi-line {...} or [...].
var yamlBlockProblems = map[string]bool{
	"did not find expected '-' indicator": true,
	"did not find expected key":           true,
	"did not find expected ',' or ']'":    false,
	"did not find expected ',' or '}'":    false,
	"did not find expected node content":  false,
}

// problemSearchBytes bounds what problemLine parses for a flow problem.
const problemSearchBytes = 8 << 20

// problemLine finds the line of the mistake behind a parser error msg that
// yaml.v3 reported at line from: the first line from there on that, with
// the lines before it, fails with msg. Past problemSearchBytes (flow
// problems, searched line by line), from stands.
func problemLine(data []byte, from int, msg string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	offsets := make([]int, len(lines)+1) // offsets[l]: bytes of the first l lines
	for i, l := range lines {
		offsets[i+1] = offsets[i] + len(l)
	}
	from = min(max(from, 1), len(lines))
	failsAt := func(l int) bool {
		var n yaml.Node
		err := decodeNoPanic(yaml.NewDecoder(bytes.NewReader(data[:offsets[l]])), &n)
		if err == nil {
			return false
		}
		m, _ := yamlProblem(err)
		return m == msg
	}
	block, ok := yamlBlockProblems[msg]
	switch {
	case !ok:
		return from
	case block:
		if l := from + sort.Search(len(lines)-from+1, func(i int) bool { return failsAt(from + i) }); l <= len(lines) {
			return l
		}
		return from
	}
	budget := problemSearchBytes
	for l := from; l <= len(lines); l++ {
		if budget -= offsets[l]; budget < 0 {
			break
		}
		if failsAt(l) {
			return l
		}
	}
	return from
}

// document decodes the single YAML document in data; nil means nothing usable.
func (d *decoder) document(data []byte) (cfg *Config) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	err := decodeNoPanic(dec, &root)
	if errors.Is(err, io.EOF) {
		return &Config{}
	}
	if err != nil {
		msg, line := yamlProblem(err)
		line = problemLine(data, line, msg)
		d.errorf("", line, "invalid YAML: %s", msg)
		return nil
	}
	var extra yaml.Node
	if err := decodeNoPanic(dec, &extra); !errors.Is(err, io.EOF) {
		d.errorf("", extra.Line, "only one YAML document is allowed")
		return nil
	}
	n := &root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return &Config{}
		}
		n = n.Content[0]
	}
	n = d.deref(n)
	if n == nil {
		return nil
	}
	if isNull(n) {
		return &Config{}
	}
	if n.Kind != yaml.MappingNode {
		d.errorf("", n.Line, "the configuration must be a mapping of sections (filters, sessions, ...), got %s", describe(n))
		return nil
	}
	cfg = &Config{}
	d.config(n, cfg)
	if d.budget <= 0 {
		return nil
	}
	return cfg
}

// decodeNoPanic turns a panic inside the YAML library into an error: malformed
// input must never crash a long-running daemon that reloads its config.
func decodeNoPanic(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

// deref follows aliases and spends the node budget; nil means the budget is gone.
func (d *decoder) deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > 100 {
			d.errorf("", n.Line, "alias chain too long")
			d.budget = -1
			return nil
		}
		n = n.Alias
	}
	d.budget--
	if d.budget == 0 {
		d.errorf("", 0, "document too large or too deeply aliased (more than %d nodes)", maxNodes)
	}
	if d.budget <= 0 || n == nil {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// describe names a node's YAML type for messages ("got sequence").
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		}
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
	}
	return "an unsupported YAML node"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

type field func(n *yaml.Node, path string)

// mapping walks the keys of a mapping node, rejecting unknown and duplicate keys,
// and returns the keys seen (presence matters where 0 is a real value).
func (d *decoder) mapping(n *yaml.Node, path string, fields map[string]field) map[string]bool {
	seen := map[string]bool{}
	if n = d.deref(n); n == nil {
		return seen
	}
	if isNull(n) {
		return seen // "collector:" with nothing under it: a section with defaults
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(path, n.Line, "must be a mapping, got %s", describe(n))
		return seen
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.deref(n.Content[i]), n.Content[i+1]
		if k == nil {
			return seen
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(path, k.Line, "keys must be plain names, got %s", describe(k))
			continue
		}
		p := join(path, k.Value)
		if k.Tag == "!!merge" {
			d.errorf(p, k.Line, "merge keys (<<) are not supported")
			continue
		}
		if seen[k.Value] {
			d.errorf(p, k.Line, "duplicate key")
			continue
		}
		fn, ok := fields[k.Value]
		if !ok {
			d.errorf(p, k.Line, "unknown key")
			continue
		}
		seen[k.Value] = true
		d.lines[p] = d.at(k.Line)
		d.throughAlias(v, func() { fn(v, p) })
	}
	return seen
}

// sequence walks a list, calling item for each element with its path and line.
func (d *decoder) sequence(n *yaml.Node, path string, item func(n *yaml.Node, path string, line int)) {
	if n = d.deref(n); n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(path, n.Line, "must be a list, got %s", describe(n))
		return
	}
	for i, c := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		stop := false
		d.throughAlias(c, func() {
			if c = d.deref(c); c == nil {
				stop = true
				return
			}
			d.lines[p] = d.at(c.Line)
			item(c, p, d.at(c.Line))
		})
		if stop {
			return
		}
	}
}

func (d *decoder) scalar(n *yaml.Node, path, want string) (*yaml.Node, bool) {
	if n = d.deref(n); n == nil {
		return nil, false
	}
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.errorf(path, n.Line, "must be %s, got %s", want, describe(n))
		return nil, false
	}
	return n, true
}

func (d *decoder) str(dst *string) field {
	return func(n *yaml.Node, path string) {
		n, ok := d.scalar(n, path, "a string")
		if !ok {
			return
		}
		if n.Tag != "!!str" {
			d.errorf(path, n.Line, "must be a string, got %s (quote it)", describe(n))
			return
		}
		*dst = n.Value
	}
}

func (d *decoder) boolean(dst *bool) field {
	return func(n *yaml.Node, path string) {
		n, ok := d.scalar(n, path, "true or false")
		if !ok {
			return
		}
		if n.Tag != "!!bool" {
			d.errorf(path, n.Line, "must be true or false, got %s", describe(n))
			return
		}
		if err := n.Decode(dst); err != nil {
			d.errorf(path, n.Line, "must be true or false, got %s", describe(n))
		}
	}
}

// integer decodes an integer in lo..hi; store is called only for values in range.
func (d *decoder) integer(lo, hi int64, store func(int64)) field {
	return func(n *yaml.Node, path string) {
		n, ok := d.scalar(n, path, "an integer")
		if !ok {
			return
		}
		if err := leadingZero(n); err != nil {
			d.errorf(path, n.Line, "%v", err)
			return
		}
		var v int64
		if n.Tag != "!!int" || n.Decode(&v) != nil {
			if n.Tag == "!!int" {
				d.errorf(path, n.Line, "%s is out of range %d..%d", n.Value, lo, hi)
			} else {
				d.errorf(path, n.Line, "must be an integer, got %s", describe(n))
			}
			return
		}
		if v < lo || v > hi {
			d.errorf(path, n.Line, "%d is out of range %d..%d", v, lo, hi)
			return
		}
		store(v)
	}
}

// leadingZero refuses a plain integer written with a leading zero: the YAML
// library reads it the YAML 1.1 way, 010 as octal 8 and 09 as a float, so a
// zero-padded vni or id would silently become another number.
func leadingZero(n *yaml.Node) error {
	if n.Style != 0 {
		return nil // quoted: a string, refused as one
	}
	sign, digits := "", n.Value
	if digits != "" && (digits[0] == '-' || digits[0] == '+') {
		sign, digits = digits[:1], digits[1:]
	}
	if len(digits) < 2 || digits[0] != '0' || strings.Trim(digits, "0123456789") != "" {
		return nil
	}
	decimal := cmp.Or(strings.TrimLeft(digits, "0"), "0")
	octal, err := strconv.ParseInt(digits, 8, 64)
	switch {
	case err != nil:
		return fmt.Errorf("%s has a leading zero, which YAML does not read as a decimal integer: write %s%s", n.Value, sign, decimal)
	case strconv.FormatInt(octal, 10) == decimal:
		return nil // 007: the same number either way
	}
	return fmt.Errorf("%s has a leading zero, which YAML reads as octal (%s%d): write %s%s (or 0o%s for octal)", n.Value, sign, octal, sign, decimal, decimal)
}

func (d *decoder) intField(dst *int, lo, hi int64) field {
	return d.integer(lo, hi, func(v int64) { *dst = int(v) })
}

func (d *decoder) uint16Field(dst *uint16, lo int64) field {
	return d.integer(lo, 65535, func(v int64) { *dst = uint16(v) })
}

// text decodes a scalar written as a string or a number (sizes, ports ranges,
// protocols) through parse.
func (d *decoder) text(want string, parse func(string) error) field {
	return func(n *yaml.Node, path string) {
		n, ok := d.scalar(n, path, want)
		if !ok {
			return
		}
		if n.Tag != "!!str" && n.Tag != "!!int" {
			d.errorf(path, n.Line, "must be %s, got %s", want, describe(n))
			return
		}
		if err := parse(n.Value); err != nil {
			d.errorf(path, n.Line, "%v", err)
		}
	}
}

func (d *decoder) duration(dst *Duration) field {
	return d.text("a duration such as 2s", func(s string) (err error) {
		*dst, err = ParseDuration(s)
		return err
	})
}

// positiveDuration is a duration for which 0 means nothing: written out, it
// is refused rather than quietly becoming def, the default of a missing key.
func (d *decoder) positiveDuration(dst *Duration, def Duration) field {
	return d.text("a duration such as 2s", func(s string) (err error) {
		if *dst, err = ParseDuration(s); err == nil && *dst == 0 {
			err = fmt.Errorf("%s must be positive (leave it out for the default, %s)", *dst, def)
		}
		return err
	})
}

func (d *decoder) size(dst *ByteSize) field {
	return d.text("a size such as 100MiB", func(s string) (err error) {
		*dst, err = ParseByteSize(s)
		return err
	})
}

func (d *decoder) prefix(dst *netip.Prefix) field {
	return d.text("a CIDR such as 192.168.0.0/24", func(s string) (err error) {
		*dst, err = parsePrefix(s)
		return err
	})
}

// parsePrefix reads a CIDR; a bare address means that one host.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 192.168.0.0/24", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 192.168.0.0/24", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s or %s/%d?)", s, p.Masked(), p.Addr(), p.Addr().BitLen())
	}
	return p, nil
}

func (d *decoder) ipv4(dst *netip.Addr) field {
	return d.text("an IPv4 address", func(s string) error {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return notIPv4(s)
		}
		*dst = a
		return nil
	})
}

// notIPv4 says why s is no IPv4 address, with a hint for the two things
// users write there that other keys take (a session's target): an address
// with a port, and a host name.
func notIPv4(s string) error {
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Is4() {
		return fmt.Errorf("%q is not an IPv4 address: give the port in its own key (port: %d)", s, ap.Port())
	}
	if validHostname(s) {
		return fmt.Errorf("%q is not an IPv4 address: host names are not resolved here, give the address", s)
	}
	return fmt.Errorf("%q is not an IPv4 address", s)
}

func (d *decoder) strings(dst *[]string) field {
	return func(n *yaml.Node, path string) {
		list := []string{}
		d.sequence(n, path, func(c *yaml.Node, p string, _ int) {
			var s string
			d.str(&s)(c, p)
			list = append(list, s)
		})
		*dst = list
	}
}

func (d *decoder) config(n *yaml.Node, cfg *Config) {
	d.mapping(n, "", map[string]field{
		"filters": func(n *yaml.Node, path string) {
			d.sequence(n, path, func(n *yaml.Node, path string, line int) {
				cfg.Filters = append(cfg.Filters, d.filter(n, path, line))
			})
		},
		"sessions": func(n *yaml.Node, path string) {
			d.sequence(n, path, func(n *yaml.Node, path string, line int) {
				cfg.Sessions = append(cfg.Sessions, d.session(n, path, line))
			})
		},
		"source": func(n *yaml.Node, path string) {
			cfg.Source = &Source{}
			d.source(n, path, cfg.Source)
		},
		"load_balancer": func(n *yaml.Node, path string) {
			cfg.LoadBalancer = &LoadBalancer{}
			d.loadBalancer(n, path, cfg.LoadBalancer)
		},
		"collector": func(n *yaml.Node, path string) {
			cfg.Collector = &Collector{Rotate: Rotate{sizeMissing: true, intervalMissing: true, keepMissing: true}}
			d.collector(n, path, cfg.Collector)
		},
		"metrics": func(n *yaml.Node, path string) {
			d.mapping(n, path, map[string]field{"listen": d.str(&cfg.Metrics.Listen)})
		},
	})
}

func (d *decoder) filter(n *yaml.Node, path string, line int) Filter {
	f := Filter{Line: line}
	rules := func(dst *[]Rule) field {
		return func(n *yaml.Node, path string) {
			d.sequence(n, path, func(n *yaml.Node, path string, line int) {
				*dst = append(*dst, d.rule(n, path, line))
			})
		}
	}
	d.mapping(n, path, map[string]field{
		"name":     d.str(&f.Name),
		"inbound":  rules(&f.Inbound),
		"outbound": rules(&f.Outbound),
	})
	return f
}

func (d *decoder) rule(n *yaml.Node, path string, line int) Rule {
	r := Rule{Line: line}
	ports := func(dst *PortRange) field {
		return d.text("all, N or N-M", func(s string) (err error) {
			*dst, err = ParsePortRange(s)
			return err
		})
	}
	seen := d.mapping(n, path, map[string]field{
		"priority": d.intField(&r.Priority, 1, 65535),
		"action": d.text("accept or reject", func(s string) error {
			switch a := Action(strings.ToLower(s)); a {
			case Accept, Reject:
				r.Action = a
				return nil
			}
			return fmt.Errorf("%q is not one of accept, reject", s)
		}),
		"protocol": d.text("a protocol name or number", func(s string) (err error) {
			r.Protocol, err = ParseProtocol(s)
			return err
		}),
		"ethertype": d.text("ipv4 or ipv6", func(s string) error {
			switch e := EtherType(strings.ToLower(s)); e {
			case IPv4, IPv6:
				r.EtherType = e
				return nil
			}
			return fmt.Errorf("%q is not one of ipv4, ipv6", s)
		}),
		"source":            d.prefix(&r.Source),
		"destination":       d.prefix(&r.Destination),
		"source_ports":      ports(&r.SourcePorts),
		"destination_ports": ports(&r.DestinationPorts),
	})
	d.required(seen, path, "priority", "action")
	r.protocolMissing = !seen["protocol"]
	r.sourcePortsSet = seen["source_ports"]
	r.destPortsSet = seen["destination_ports"]
	return r
}

func (d *decoder) session(n *yaml.Node, path string, line int) Session {
	s := Session{Line: line}
	seen := d.mapping(n, path, map[string]field{
		"name":          d.str(&s.Name),
		"priority":      d.intField(&s.Priority, 1, 32766),
		"vni":           d.integer(0, MaxVNI, func(v int64) { s.VNI = uint32(v) }),
		"packet_length": d.intField(&s.PacketLength, 0, 65535),
		"enabled":       d.boolean(&s.Enabled),
		"filter":        d.str(&s.Filter),
		"sources":       d.strings(&s.Sources),
		"target":        d.str(&s.Target),
		"rate_limit":    d.intField(&s.RateLimit, 0, 1<<31-1),
	})
	s.enabledMissing = !seen["enabled"]
	d.required(seen, path, "name", "priority", "vni", "filter", "sources", "target")
	return s
}

// required reports keys a mapping must have; the error sits on the mapping's line.
func (d *decoder) required(seen map[string]bool, path string, keys ...string) {
	for _, k := range keys {
		if !seen[k] {
			p := join(path, k)
			d.errorf(p, d.lineOf(p), "required")
		}
	}
}

func (d *decoder) source(n *yaml.Node, path string, s *Source) {
	d.mapping(n, path, map[string]field{
		"hash":   d.str(&s.Hash),
		"device": d.str(&s.Device),
		"mark":   d.integer(0, 1<<32-1, func(v int64) { s.Mark = uint32(v) }),
	})
}

func (d *decoder) loadBalancer(n *yaml.Node, path string, lb *LoadBalancer) {
	seen := d.mapping(n, path, map[string]field{
		"listener": func(n *yaml.Node, path string) {
			l := &lb.Listener
			l.Line = d.lines[path]
			d.mapping(n, path, map[string]field{
				"name":       d.str(&l.Name),
				"protocol":   d.str(&l.Protocol),
				"vip":        d.ipv4(&l.VIP),
				"port":       d.uint16Field(&l.Port, 1),
				"interfaces": d.strings(&l.Interfaces),
				"access_control": func(n *yaml.Node, path string) {
					d.mapping(n, path, map[string]field{
						"mode": d.str(&l.AccessControl.Mode),
						"allowlist": func(n *yaml.Node, path string) {
							list := []netip.Prefix{}
							d.sequence(n, path, func(n *yaml.Node, path string, _ int) {
								var p netip.Prefix
								d.prefix(&p)(n, path)
								list = append(list, p)
							})
							l.AccessControl.Allowlist = list
						},
					})
				},
			})
		},
		"algorithm":         d.str(&lb.Algorithm),
		"affinity":          d.str(&lb.Affinity),
		"maglev_table_size": d.intField(&lb.MaglevSize, 1, MaxMaglevSize),
		"flow_timeout":      d.positiveDuration(&lb.FlowTimeout, DefaultFlowTimeout),
		"xdp_mode":          d.str(&lb.XDPMode),
		"pin_path":          d.str(&lb.PinPath),
		"backends": func(n *yaml.Node, path string) {
			d.sequence(n, path, func(n *yaml.Node, path string, line int) {
				b := Backend{Line: line}
				seen := d.mapping(n, path, map[string]field{
					"name":    d.str(&b.Name),
					"address": d.ipv4(&b.Address),
					"port":    d.uint16Field(&b.Port, 1),
					"weight":  d.intField(&b.Weight, 0, MaxWeight),
				})
				b.weightMissing = !seen["weight"]
				d.required(seen, path, "address")
				lb.Backends = append(lb.Backends, b)
			})
		},
		"health_check": func(n *yaml.Node, path string) {
			h := &lb.HealthCheck
			d.mapping(n, path, map[string]field{
				"enabled":             d.boolean(&h.Enabled),
				"type":                d.str(&h.Type),
				"port":                d.uint16Field(&h.Port, 1),
				"path":                d.str(&h.Path),
				"interval":            d.positiveDuration(&h.Interval, DefaultHealthEvery),
				"timeout":             d.positiveDuration(&h.Timeout, DefaultHealthWait),
				"healthy_threshold":   d.intField(&h.HealthyThreshold, 1, 1000),
				"unhealthy_threshold": d.intField(&h.UnhealthyThreshold, 1, 1000),
				"all_unhealthy":       d.str(&h.AllUnhealthy),
			})
		},
		"bgp": func(n *yaml.Node, path string) {
			lb.BGP = d.bgp(n, path)
		},
	})
	d.required(seen, path, "listener", "backends")
}

func (d *decoder) bgp(n *yaml.Node, path string) *BGP {
	g := &BGP{}
	asn := func(dst *uint32) field { return d.integer(1, 1<<32-1, func(v int64) { *dst = uint32(v) }) }
	seen := d.mapping(n, path, map[string]field{
		"asn":         asn(&g.ASN),
		"router_id":   d.ipv4(&g.RouterID),
		"hold_time":   d.duration(&g.HoldTime),
		"communities": d.strings(&g.Communities),
		"med":         d.integer(0, 1<<32-1, func(v int64) { g.MED = uint32(v) }),
		"drain":       d.duration(&g.Drain),
		"peers": func(n *yaml.Node, path string) {
			d.sequence(n, path, func(n *yaml.Node, path string, line int) {
				p := BGPPeer{Line: line}
				seen := d.mapping(n, path, map[string]field{
					"address":  d.ipv4(&p.Address),
					"asn":      asn(&p.ASN),
					"port":     d.uint16Field(&p.Port, 1),
					"password": d.str(&p.Password),
				})
				d.required(seen, path, "address", "asn")
				g.Peers = append(g.Peers, p)
			})
		},
	})
	g.holdTimeMissing, g.drainMissing = !seen["hold_time"], !seen["drain"]
	d.required(seen, path, "asn", "router_id", "peers")
	return g
}

func (d *decoder) collector(n *yaml.Node, path string, c *Collector) {
	d.mapping(n, path, map[string]field{
		"listen":            d.str(&c.Listen),
		"receive":           d.str(&c.Receive),
		"output_dir":        d.str(&c.OutputDir),
		"format":            d.str(&c.Format),
		"unknown_vni":       d.str(&c.UnknownVNI),
		"readers":           d.intField(&c.Readers, 0, MaxReaders),
		"post_rotate":       d.str(&c.PostRotate),
		"health_listen":     d.str(&c.HealthListen),
		"tap":               d.str(&c.Tap),
		"file_mode":         d.str(&c.FileMode),
		"group":             d.str(&c.Group),
		"file_name":         d.str(&c.FileName),
		"compress":          d.str(&c.Compress),
		"session_idle":      d.positiveDuration(&c.SessionIdle, DefaultSessionIdle),
		"max_sessions":      d.intField(&c.MaxSessions, 1, MaxCollectorSessions),
		"max_source_series": d.intField(&c.MaxSourceSeries, 1, MaxSourceSeries),
		"inputs": func(n *yaml.Node, path string) {
			d.sequence(n, path, func(n *yaml.Node, path string, line int) {
				c.Inputs = append(c.Inputs, d.input(n, path, line))
			})
		},
		"sessions": func(n *yaml.Node, path string) {
			d.sequence(n, path, func(n *yaml.Node, path string, line int) {
				s := CollectorSession{Line: line}
				seen := d.mapping(n, path, map[string]field{
					"name":          d.str(&s.Name),
					"protocol":      d.str(&s.Protocol),
					"id":            d.integer(0, 1<<32-1, func(v int64) { s.ID = uint32(v) }),
					"packet_length": d.intField(&s.PacketLength, 0, MaxPacketLength),
				})
				d.required(seen, path, "name", "protocol", "id")
				c.Sessions = append(c.Sessions, s)
			})
		},
		"rotate": func(n *yaml.Node, path string) {
			r := &c.Rotate
			seen := d.mapping(n, path, map[string]field{
				"size":           d.size(&r.Size),
				"interval":       d.duration(&r.Interval),
				"keep":           d.intField(&r.Keep, 0, 1<<31-1),
				"keep_size":      d.size(&r.KeepBytes),
				"keep_age":       d.duration(&r.KeepAge),
				"max_total_size": d.size(&r.MaxTotalSize),
				"min_free":       d.size(&r.MinFree),
			})
			r.sizeMissing, r.intervalMissing, r.keepMissing = !seen["size"], !seen["interval"], !seen["keep"]
		},
	})
}

// input reads one collector input: a string ("geneve", "geneve:6082") or a
// mapping {protocol, port}.
func (d *decoder) input(n *yaml.Node, path string, line int) Input {
	in := Input{Line: line}
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		parsed, err := ParseInput(n.Value)
		if err != nil {
			d.errorf(path, line, "%v", err)
		}
		parsed.Line = line
		return parsed
	}
	seen := d.mapping(n, path, map[string]field{
		"protocol": d.str(&in.Protocol),
		"port":     d.uint16Field(&in.Port, 1),
	})
	d.required(seen, path, "protocol")
	return in
}
