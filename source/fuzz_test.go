// SPDX-License-Identifier: Apache-2.0

package source

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// FuzzClassify feeds arbitrary frames to both source programs: whatever the
// bytes, the verdict lets the original continue and the program never fails.
func FuzzClassify(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("skipped: needs root to load BPF")
	}
	f.Add(tcp4(f, testIP, sourceIP, 57032, 1234, 15))
	f.Add(tcp6HopByHop(f, "fd00:1::5", "fd00:2::1", 40000, 443))
	f.Add(frag4(f, "10.7.1.1", "10.0.0.1"))
	f.Add(arp(f))
	f.Add(tcp4(f, testIP, sourceIP, 57032, 1234, 15)[:20])
	cfg := mustParse(f, oneSession(`{priority: 1, action: reject, protocol: tcp, destination_ports: 22},
	  {priority: 2, action: accept, protocol: all}`, `{priority: 1, action: accept, protocol: udp, ethertype: ipv6}`))
	s := testSource(f, cfg)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 4000 {
			return // BPF_PROG_TEST_RUN wants at least an Ethernet header
		}
		for _, p := range []*ebpf.Program{s.objs.XmSourceIngress, s.objs.XmSourceEgress} {
			ret, err := p.Run(&ebpf.RunOptions{Data: frame})
			if errors.Is(err, unix.EINVAL) {
				return // the test-run harness refused the frame (e.g. a truncated IP header)
			}
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if int32(ret) != -1 {
				t.Fatalf("verdict %d, want -1", int32(ret))
			}
		}
	})
}

// FuzzCompile compiles whatever configuration the parser accepts: compile
// either succeeds or returns an error, and its rule blocks are well formed.
func FuzzCompile(f *testing.F) {
	f.Add(seedYAML)
	f.Add(oneSession(`{priority: 1, action: accept, protocol: tcp, source: "fd00::/8", ethertype: ipv6}`, ``))
	f.Fuzz(func(t *testing.T, yaml string) {
		if len(yaml) > 1<<14 {
			return
		}
		cfg, err := parseQuiet(yaml)
		if err != nil {
			return
		}
		ids := map[string]uint16{}
		for i, s := range cfg.Sessions {
			if i >= MaxSessions {
				return
			}
			ids[s.Name] = uint16(i)
		}
		p, err := compile(cfg, fakeResolved(cfg), ids)
		if err != nil {
			return
		}
		for dir := range p.Rules {
			for i, r := range p.Rules[dir] {
				if int(r.Next) <= i || int(r.Next) > len(p.Rules[dir]) {
					t.Fatalf("%s rule %d: next %d out of order", dirName(dir), i, r.Next)
				}
				for w := 0; w < 4; w++ {
					if r.Src[w]&^r.SrcMask[w] != 0 || r.Dst[w]&^r.DstMask[w] != 0 {
						t.Fatalf("rule %d: address bits outside its mask", i)
					}
				}
			}
		}
	})
}

func parseQuiet(yaml string) (cfg *configT, err error) {
	if strings.Count(yaml, "\n") > 400 {
		return nil, errTooManyRules
	}
	return parseConfig([]byte(yaml))
}
