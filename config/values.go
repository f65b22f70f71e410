// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// protocolNames are the names a rule's protocol may be written with.
var protocolNames = map[string]Protocol{
	"all":    ProtocolAll,
	"tcp":    ProtocolTCP,
	"udp":    ProtocolUDP,
	"icmp":   ProtocolICMP,
	"icmpv6": ProtocolICMPv6,
}

// ParseProtocol reads tcp, udp, icmp, icmpv6, all (any case) or a number 0..255.
func ParseProtocol(s string) (Protocol, error) {
	if p, ok := protocolNames[strings.ToLower(s)]; ok {
		return p, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not one of tcp, udp, icmp, icmpv6, all or a number 0..255", s)
	}
	if n < 0 || n > 255 {
		return 0, fmt.Errorf("%d is out of range 0..255", n)
	}
	return Protocol(n), nil
}

// String gives the name a config file would use: a name when there is one, else the number.
func (p Protocol) String() string {
	for name, v := range protocolNames {
		if v == p {
			return name
		}
	}
	return strconv.Itoa(int(p))
}

// MarshalYAML writes the protocol by name so the effective config reads like the input.
func (p Protocol) MarshalYAML() (any, error) {
	if _, ok := protocolNames[p.String()]; ok {
		return p.String(), nil
	}
	return int(p), nil
}

// IsPortProtocol reports whether rules with this protocol may restrict ports.
func (p Protocol) IsPortProtocol() bool { return p == ProtocolTCP || p == ProtocolUDP }

// ParsePortRange reads "all", "N" or "N-M" with 0 <= N <= M <= 65535.
func ParsePortRange(s string) (PortRange, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "all") {
		return AllPorts, nil
	}
	from, to, isRange := strings.Cut(s, "-")
	lo, err := parsePort(from)
	if err != nil {
		return PortRange{}, fmt.Errorf("%q is not all, N or N-M: %w", s, err)
	}
	hi := lo
	if isRange {
		if hi, err = parsePort(to); err != nil {
			return PortRange{}, fmt.Errorf("%q is not all, N or N-M: %w", s, err)
		}
	}
	if lo > hi {
		return PortRange{}, fmt.Errorf("%q: first port %d is above last port %d", s, lo, hi)
	}
	return PortRange{From: lo, To: hi}, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || s == "" {
		return 0, fmt.Errorf("port %q is not a number", s)
	}
	if n > 65535 {
		return 0, fmt.Errorf("port %d is out of range 0..65535", n)
	}
	return uint16(n), nil
}

// String writes the range as a config file would: all, N or N-M.
func (r PortRange) String() string {
	switch {
	case r == AllPorts:
		return "all"
	case r.From == r.To:
		return strconv.Itoa(int(r.From))
	default:
		return fmt.Sprintf("%d-%d", r.From, r.To)
	}
}

// Contains reports whether port is in the range.
func (r PortRange) Contains(port uint16) bool { return port >= r.From && port <= r.To }

// MarshalYAML writes all, N or N-M (a single port as a number).
func (r PortRange) MarshalYAML() (any, error) {
	if r.From == r.To {
		return int(r.From), nil
	}
	return r.String(), nil
}

// ParseDuration reads a Go duration ("2s", "1h30m"); "0" is zero. Negative durations are errors.
func ParseDuration(s string) (Duration, error) {
	rest := strings.TrimSpace(s)
	var days time.Duration
	if i := strings.IndexByte(rest, 'd'); i > 0 {
		// Days, for retention ("7d", "1d12h"): a number before the d.
		if n, err := strconv.ParseUint(rest[:i], 10, 16); err == nil {
			days = time.Duration(n) * 24 * time.Hour
			rest = rest[i+1:]
			if rest == "" {
				rest = "0s"
			}
		}
	}
	d, err := time.ParseDuration(rest)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 500ms, 2s, 1h, 7d", s)
	}
	// Checked before the days are added: "1d-12h" was taken as 12h, and a
	// sum past the longest duration wrapped round to "negative".
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	if d > math.MaxInt64-days {
		return 0, fmt.Errorf("%q is longer than %v, the longest duration", s, time.Duration(math.MaxInt64).Truncate(time.Hour))
	}
	d += days
	return Duration(d), nil
}

// ParseFileMode reads an octal file mode such as 0640.
func ParseFileMode(s string) (uint32, error) {
	m, err := strconv.ParseUint(strings.TrimSpace(s), 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("%q is not an octal mode such as 0640", s)
	}
	return uint32(m), nil
}

// fileNamePlaceholders are what a collector.file_name template fills in.
var fileNamePlaceholders = strings.NewReplacer("{session}", "", "{host}", "", "{vni}", "", "{id}", "", "{protocol}", "", "{time}", "")

// CheckFileName checks a collector.file_name template: {time} exactly once
// (it orders and separates the files), no placeholder but {session},
// {host}, {vni}, {id}, {protocol} and {time}, and around them at most 100
// bytes of letters, digits, '.', '_' and '-', not leading with '.' (hidden
// names are the open files'): every name it makes is one plain file name.
// The collector refuses what this refuses.
func CheckFileName(tmpl string) error {
	if strings.Count(tmpl, "{time}") != 1 {
		return fmt.Errorf("%q must contain {time} once (it orders and separates the files)", tmpl)
	}
	if strings.HasPrefix(tmpl, ".") {
		return fmt.Errorf("%q must not start with '.' (hidden names are the files being written)", tmpl)
	}
	// One pass, so that placeholders cannot be pieced together from others.
	rest := fileNamePlaceholders.Replace(tmpl)
	if strings.ContainsFunc(rest, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) {
		return fmt.Errorf("%q: only {session}, {host}, {vni}, {id}, {protocol}, {time} and letters, digits, '.', '_', '-' may be used (no '/')", tmpl)
	}
	if len(rest) > 100 {
		return fmt.Errorf("%q has %d bytes besides the placeholders, at most 100", tmpl, len(rest))
	}
	return nil
}

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes the shortest exact form in the largest whole unit: 1h, 90m, 2s, 500ms.
func (d Duration) String() string {
	td := time.Duration(d)
	units := []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}, {time.Microsecond, "us"}}
	if td == 0 {
		return "0s"
	}
	for _, u := range units {
		if td%u.unit == 0 {
			return strconv.FormatInt(int64(td/u.unit), 10) + u.name
		}
	}
	return td.String()
}

// MarshalYAML writes the duration as ParseDuration reads it.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

type sizeUnit struct {
	name string
	mult int64
}

// sizeUnits lists binary units first so String prefers them (rotation sizes are
// usually powers of two); parsing accepts any of them, case-insensitively.
var sizeUnits = []sizeUnit{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
}

var errSize = errors.New("not a size")

// ParseByteSize reads a byte count with an optional unit: 4096, 4096B, 64KiB, 100MiB,
// 1GB, 2GiB, 1TB (K/M/G/T alone are decimal, as in 1G = 10^9). Negative sizes are errors.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q is not a size such as 4096, 64KiB, 100MiB, 1GB", s)
	}
	if i < len(t) && (t[i] == '.' || t[i] == ',') {
		// Not an unknown unit ".5GiB", as it was reported.
		return 0, fmt.Errorf("%q has a fraction: sizes are whole numbers, give a smaller unit (1536MiB, not 1.5GiB)", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}
	unit := strings.TrimSpace(t[i:])
	mult, err := unitMultiplier(unit)
	if err != nil {
		return 0, fmt.Errorf("%q has unknown unit %q (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s, unit)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return ByteSize(n * mult), nil
}

func unitMultiplier(unit string) (int64, error) {
	switch strings.ToLower(unit) {
	case "", "b":
		return 1, nil
	case "k":
		return 1e3, nil
	case "m":
		return 1e6, nil
	case "g":
		return 1e9, nil
	case "t":
		return 1e12, nil
	}
	for _, u := range sizeUnits {
		if strings.EqualFold(unit, u.name) {
			return u.mult, nil
		}
	}
	return 0, errSize
}

// String writes the size in the largest unit that divides it exactly, else in bytes.
func (b ByteSize) String() string {
	if b > 0 {
		for _, u := range sizeUnits {
			if int64(b)%u.mult == 0 {
				return strconv.FormatInt(int64(b)/u.mult, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalYAML writes the size as ParseByteSize reads it; plain byte counts stay numbers.
func (b ByteSize) MarshalYAML() (any, error) {
	s := b.String()
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	return s, nil
}

// ParseInput reads a collector input written as a string: "vxlan",
// "geneve", "geneve:6082", "gre" or "erspan". Which protocols and ports are
// allowed is validation's business; this only splits the text.
func ParseInput(s string) (Input, error) {
	name, port, hasPort := strings.Cut(s, ":")
	in := Input{Protocol: name}
	if !hasPort {
		return in, nil
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return in, fmt.Errorf("%q: port %q is not a number 1..65535", s, port)
	}
	in.Port = uint16(n)
	return in, nil
}

// MarshalYAML writes an input as a string, the short form.
func (in Input) MarshalYAML() (any, error) { return in.String(), nil }

// String writes an input as ParseInput reads it.
func (in Input) String() string {
	if in.Port != 0 {
		return in.Protocol + ":" + strconv.Itoa(int(in.Port))
	}
	return in.Protocol
}
