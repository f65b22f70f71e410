// SPDX-License-Identifier: Apache-2.0

package lock

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestNS: a name is held once in a namespace, its holder is named by pid,
// and it is free again once released.
func TestNS(t *testing.T) {
	name := fmt.Sprintf("xmirror-lock-test-%d", os.Getpid())
	if got := NSHolder(name); got != "" {
		t.Fatalf("a free name has holder %q", got)
	}
	l, err := TakeNS(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TakeNS(name); !errors.Is(err, ErrHeld) {
		t.Errorf("second take: %v, want ErrHeld", err)
	}
	if got := NSHolder(name); !strings.HasPrefix(got, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("holder %q, want pid %d", got, os.Getpid())
	}
	l.Release()
	again, err := TakeNS(name)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again.Release()
}
