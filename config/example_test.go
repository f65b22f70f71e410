// SPDX-License-Identifier: Apache-2.0

package config_test

import (
	"fmt"

	"github.com/xmirror/xmirror/config"
)

func ExampleParse() {
	_, err := config.Parse([]byte(`
filters:
  - name: f
sessions:
  - name: s
    priority: 1
    vni: 16777216
    filter: f
    sources: [eth0]
    target: 192.168.0.147
    vnii: 3
`))
	fmt.Println(err)
	// Output:
	// sessions[0].vni: 16777216 is out of range 0..16777215 (line 7)
	// sessions[0].vnii: unknown key (line 11)
}

func ExampleConfig_Marshal() {
	cfg, err := config.Parse([]byte(`
collector: {rotate: {size: 1GiB, interval: 15m}}
metrics: {listen: "off"}
`))
	if err != nil {
		panic(err)
	}
	out, _ := cfg.Marshal()
	fmt.Print(string(out))
	// Output:
	// collector:
	//   listen: 0.0.0.0:4789
	//   receive: auto
	//   output_dir: /var/lib/xmirror/pcap
	//   format: pcapng
	//   rotate:
	//     size: 1GiB
	//     interval: 15m
	//     keep: 24
	//   unknown_vni: capture
	//   health_listen: :9091
	//   file_mode: "0640"
	//   file_name: '{session}-{host}-{time}'
	//   compress: none
	//   session_idle: 5m
	//   max_sessions: 1024
	//   max_source_series: 4096
	//   inputs: [vxlan]
	// metrics:
	//   listen: "off"
}
