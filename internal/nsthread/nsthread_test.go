// SPDX-License-Identifier: Apache-2.0

package nsthread

import (
	"os"
	"testing"

	"github.com/vishvananda/netns"
)

// TestRun enters a new namespace for fn only, leaving the caller's thread
// where it was, and runs fn in the namespace the thread is already in.
func TestRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root")
	}
	var ns netns.NsHandle
	if err := Locked(func(orig netns.NsHandle) (err error) {
		if ns, err = netns.New(); err != nil {
			return err
		}
		return netns.Set(orig)
	}); err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var inside netns.NsHandle
	if err := Run(ns, func() (err error) { inside, err = netns.Get(); return err }); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if !inside.Equal(ns) {
		t.Errorf("fn ran in %v, want %v", inside, ns)
	}
	here, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer here.Close()
	if here.Equal(ns) {
		t.Errorf("the caller's thread was left in the new namespace")
	}
	if err := Run(here, func() error { return nil }); err != nil {
		t.Errorf("run in the current namespace: %v", err)
	}
}
