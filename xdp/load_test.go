// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"testing"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

func TestProgramLoads(t *testing.T) {
	labtest.RequireRoot(t)
	o, err := loadObjects("")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
}
