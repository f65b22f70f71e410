// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Input is one tunnel the collector receives (collector.inputs, --input).
type Input struct {
	// Proto is ProtoVXLAN (on the listen address's port), ProtoGENEVE
	// (UDP, Port) or ProtoGRE (IP protocol 47: ERSPAN type I, II and III
	// and transparent Ethernet bridging; ProtoERSPAN names the same input).
	Proto Protocol
	// Port is the UDP port of a GENEVE input (0: any free port, see
	// InputAddr; the configuration's default is DefaultGenevePort); the
	// VXLAN input takes the listen address's, GRE has none.
	Port uint16
}

func (in Input) String() string {
	if in.Proto == ProtoGENEVE {
		return in.Proto.String() + ":" + strconv.Itoa(int(in.Port))
	}
	return in.Proto.String()
}

// ParseInput reads an input as the flag gives it: "vxlan", "geneve",
// "geneve:6082", "gre" or "erspan" (the same input as gre).
func ParseInput(s string) (Input, error) {
	name, port, hasPort := strings.Cut(s, ":")
	p, err := ParseProtocol(name)
	if err != nil {
		return Input{}, fmt.Errorf("input %q: %w", s, err)
	}
	in := Input{Proto: p}
	if p == ProtoERSPAN {
		in.Proto = ProtoGRE
	}
	if !hasPort {
		return in, nil
	}
	if p != ProtoGENEVE {
		return Input{}, fmt.Errorf("input %q: only geneve takes a port (vxlan listens on the listen address's port, gre has no port)", s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return Input{}, fmt.Errorf("input %q: port %q is not a number 1..65535", s, port)
	}
	in.Port = uint16(n)
	return in, nil
}

// CheckInputs refuses an input listed twice (gre and erspan are one) and
// GENEVE on the VXLAN port.
func CheckInputs(ins []Input, listen string) error {
	seen := map[Input]bool{}
	for _, in := range ins {
		if in.Proto == ProtoERSPAN {
			in.Proto = ProtoGRE
		}
		if in.Proto >= numProtocols {
			return fmt.Errorf("input %s: unknown protocol", in)
		}
		if seen[in] {
			return fmt.Errorf("input %s is listed twice (gre and erspan are one input)", in)
		}
		seen[in] = true
	}
	ap, err := resolveListen(listen)
	if err == nil && ap.Port() != 0 && seen[Input{Proto: ProtoVXLAN}] && seen[Input{Proto: ProtoGENEVE, Port: ap.Port()}] {
		return fmt.Errorf("input geneve:%d: that is the VXLAN listen port", ap.Port())
	}
	return nil
}

// inputNames lists the inputs' protocols for the section header's comment:
// "vxlan, geneve, gre".
func inputNames(ins []Input) string {
	names := make([]string, 0, len(ins))
	for _, in := range ins {
		names = append(names, in.Proto.String())
	}
	return strings.Join(names, ", ")
}

// receives reports whether the inputs take the sessions of protocol p
// (ERSPAN and GRE arrive on the one GRE input).
func receives(ins []Input, p Protocol) bool {
	if p == ProtoERSPAN {
		p = ProtoGRE
	}
	for _, in := range ins {
		if in.Proto == p {
			return true
		}
	}
	return false
}

// warnUnreceived says which named sessions no input receives: their files
// would never come, and nothing else would say why. VXLAN sessions are left
// out: sessions[] names those for the sources, and a collector that shares
// the file without taking VXLAN has no use for them.
func (c *Collector) warnUnreceived(named map[Key]Session) {
	keys := make([]Key, 0, len(named))
	for k := range named {
		if k.Proto != ProtoVXLAN && !receives(c.opts.Inputs, k.Proto) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b Key) int { return cmp.Compare(a.packed(), b.packed()) })
	for _, k := range keys {
		in := Input{Proto: k.Proto}
		if k.Proto == ProtoERSPAN {
			in.Proto = ProtoGRE
		}
		c.log.Warn("session of a protocol no input receives", "session", named[k].Name, "protocol", k.Proto.String(),
			"id", k.ID, "input", in.Proto.String(), "inputs", inputNames(c.opts.Inputs))
	}
}
