// SPDX-License-Identifier: Apache-2.0

package syscheck

import (
	"strings"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/source"
)

// checkSourceHost: the source refuses to start with sessions whose
// interfaces or targets this host does not have (what `xmirror check`
// cannot see: it reads the file only).
func checkSourceHost(cfg *config.Config) Result {
	r := Result{Check: "sources and targets"}
	if err := source.CheckHost(cfg); err != nil {
		r.Status, r.Detail = Fail, strings.ReplaceAll(err.Error(), "\n", "; ")
		r.Fix = "change the sessions as each message says; the source starts only when all of them resolve"
		return r
	}
	r.Status, r.Detail = Pass, "every enabled session's interfaces and target resolve"
	return r
}
