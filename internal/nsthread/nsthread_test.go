// SPDX-License-Identifier: Apache-2.0

package nsthread

import (
	"os"
	"os/exec"
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

// TestRunWithoutSysAdmin: a process without CAP_SYS_ADMIN, as the source
// runs under its unit, runs fn in its own namespace, which takes no setns
// on the way in or out. The test runs itself again under setpriv with
// CAP_SYS_ADMIN out of the bounding set.
func TestRunWithoutSysAdmin(t *testing.T) {
	if os.Getenv("NSTHREAD_NO_SYS_ADMIN") == "1" {
		here, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer here.Close()
		if err := netns.Set(here); err == nil {
			t.Fatal("setns succeeded: this process still holds CAP_SYS_ADMIN")
		}
		ran := false
		if err := Run(here, func() error { ran = true; return nil }); err != nil || !ran {
			t.Fatalf("run in the current namespace: ran %v, err %v", ran, err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("dropping CAP_SYS_ADMIN from a root process needs root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	cmd := exec.Command(setpriv, "--bounding-set=-sys_admin", os.Args[0], "-test.run=^TestRunWithoutSysAdmin$", "-test.v")
	cmd.Env = append(os.Environ(), "NSTHREAD_NO_SYS_ADMIN=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("without CAP_SYS_ADMIN: %v\n%s", err, out)
	}
}
