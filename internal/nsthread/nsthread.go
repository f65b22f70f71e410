// SPDX-License-Identifier: Apache-2.0

// Package nsthread runs a function inside a network namespace. A namespace
// belongs to an OS thread, not to a goroutine, and some calls act in the
// namespace of the thread that makes them (netlink sockets when created,
// BPF links by ifindex): a goroutine that must act in a namespace other
// than its thread's runs them through Run.
package nsthread

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Run runs fn inside ns on a fresh goroutine locked to its OS thread. A
// thread already in ns neither enters nor leaves it: setns needs
// CAP_SYS_ADMIN, which a process acting in its own namespace (the source
// under its unit) does not have.
func Run(ns netns.NsHandle, fn func() error) error {
	return Locked(func(orig netns.NsHandle) error {
		if orig.Equal(ns) {
			return fn()
		}
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter namespace: %w", err)
		}
		return fn()
	})
}

// Locked runs fn on a fresh goroutine locked to its thread, with the
// thread's namespace as it was, and puts the thread back into that
// namespace afterwards if fn left it. If that fails the thread stays
// locked, so the Go runtime retires it instead of reusing it in the wrong
// namespace.
func Locked(fn func(orig netns.NsHandle) error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := fn(orig)
		if stayed(orig) {
			runtime.UnlockOSThread()
			errc <- ferr
			return
		}
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// stayed tells whether the calling thread is still in orig.
func stayed(orig netns.NsHandle) bool {
	now, err := netns.Get()
	if err != nil {
		return false
	}
	defer now.Close()
	return now.Equal(orig)
}
