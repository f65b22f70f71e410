// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"fmt"
	"strconv"
)

// Protocol is the tunnel a mirrored frame arrived in. It is half of a
// session's key: VNI 7 in VXLAN and VNI 7 in GENEVE are two sessions.
type Protocol uint8

// Tunnel protocols; their names are the protocol of collector.sessions, of
// the "protocol" metric label and of the unnamed sessions' names.
const (
	// ProtoVXLAN: RFC 7348, the id is the VNI (sessions named vni-N).
	ProtoVXLAN Protocol = iota
	// ProtoGENEVE: RFC 8926, the id is the VNI (geneve-N).
	ProtoGENEVE
	// ProtoERSPAN: ERSPAN type I, II and III in GRE, the id is the
	// session id (erspan-N; type I has none: 0).
	ProtoERSPAN
	// ProtoGRE: transparent Ethernet bridging in GRE, the id is the GRE
	// key, 0 without one (gre-N).
	ProtoGRE
	numProtocols
)

var protocolNames = [numProtocols]string{"vxlan", "geneve", "erspan", "gre"}

func (p Protocol) String() string {
	if p < numProtocols {
		return protocolNames[p]
	}
	return "proto" + strconv.Itoa(int(p))
}

// ParseProtocol reads a protocol name (vxlan, geneve, erspan, gre).
func ParseProtocol(s string) (Protocol, error) {
	for p, name := range protocolNames {
		if s == name {
			return Protocol(p), nil
		}
	}
	return 0, fmt.Errorf("protocol %q is not vxlan, geneve, erspan or gre", s)
}

// Key identifies a session: its tunnel protocol and the id the tunnel
// carries (VNI, ERSPAN session id, GRE key).
type Key struct {
	Proto Protocol
	ID    uint32
}

// packed is the key as one number, for the per-packet maps.
func (k Key) packed() uint64 { return uint64(k.Proto)<<32 | uint64(k.ID) }

// VXLAN is the key of a VXLAN session.
func VXLAN(vni uint32) Key { return Key{Proto: ProtoVXLAN, ID: vni} }

func (k Key) String() string { return k.fallbackName() }

// fallbackName names a session no configuration names: vni-N for VXLAN
// (as before there were other protocols), PROTOCOL-N for the others.
func (k Key) fallbackName() string {
	id := strconv.FormatUint(uint64(k.ID), 10)
	if k.Proto == ProtoVXLAN {
		return "vni-" + id
	}
	return k.Proto.String() + "-" + id
}

// ifTag is what interface names append to the mirror source: vniN for
// VXLAN (as before), PROTOCOL N for the others ("192.0.2.1/erspan100").
func (k Key) ifTag() string {
	if k.Proto == ProtoVXLAN {
		return "vni" + strconv.FormatUint(uint64(k.ID), 10)
	}
	return k.Proto.String() + strconv.FormatUint(uint64(k.ID), 10)
}

// labels are the metric labels after session: vni="N" for VXLAN (as
// before), protocol and id for the others.
func (k Key) labels() string {
	id := strconv.FormatUint(uint64(k.ID), 10)
	if k.Proto == ProtoVXLAN {
		return `vni="` + id + `"`
	}
	return `protocol="` + k.Proto.String() + `",id="` + id + `"`
}

// describe says what the id is, for interface descriptions: "VNI 7"
// (VXLAN, as before), "GENEVE VNI 7", "ERSPAN session 100", "GRE key 7".
func (k Key) describe() string {
	id := strconv.FormatUint(uint64(k.ID), 10)
	switch k.Proto {
	case ProtoVXLAN:
		return "VNI " + id
	case ProtoGENEVE:
		return "GENEVE VNI " + id
	case ProtoERSPAN:
		return "ERSPAN session " + id
	}
	return "GRE key " + id
}

// Session is what the configuration says about a session.
type Session struct {
	Name string
	// PacketLength is the session's packet length, the snaplen of its
	// interface blocks (0: whole frames).
	PacketLength int
}
