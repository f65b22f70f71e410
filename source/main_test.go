// SPDX-License-Identifier: Apache-2.0

package source

import (
	"testing"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

func TestMain(m *testing.M) { labtest.Main(m) }
