package xdp

import (
	"testing"

	"github.com/xmirror/xmirror/internal/netlab"
)

func TestProgramLoads(t *testing.T) {
	netlab.RequireRoot(t)
	o, err := loadObjects("")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
}
