package source

import (
	"testing"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

func TestMain(m *testing.M) { labtest.Main(m) }
