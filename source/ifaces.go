// SPDX-License-Identifier: Apache-2.0

package source

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xmirror/xmirror/internal/nsthread"
)

// ifaceEvery is how often the source looks for source interfaces that were
// deleted or re-created (a variable for tests).
var ifaceEvery = time.Second

// ifaceKeeper notices source interfaces that go away and come back. A
// program is attached to an interface by index: when the interface is
// deleted its program goes with it, and an interface re-created under the
// same name is a new index that nothing mirrors, until the configuration is
// applied again, which the keeper does.
type ifaceKeeper struct {
	done chan struct{}
	wg   sync.WaitGroup
}

// keepInterfaces starts the keeper in the caller's network namespace (the
// source's). nil when that namespace cannot be held: nothing is kept.
func (s *Source) keepInterfaces() *ifaceKeeper {
	ns, err := netns.Get()
	if err != nil {
		slog.Warn("no handle of the network namespace: re-created source interfaces are not noticed", "err", err)
		return nil
	}
	k := &ifaceKeeper{done: make(chan struct{})}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		defer ns.Close()
		t := time.NewTicker(ifaceEvery)
		defer t.Stop()
		for {
			select {
			case <-k.done:
				return
			case <-t.C:
			}
			if err := nsthread.Run(ns, s.checkInterfaces); err != nil {
				slog.Warn("check source interfaces", "err", err)
			}
		}
	}()
	return k
}

func (k *ifaceKeeper) stop() {
	if k != nil {
		close(k.done)
		k.wg.Wait()
	}
}

// checkInterfaces applies the running configuration again when a source
// interface is gone or has another index, and records the ones still
// missing. It runs in the source's namespace.
func (s *Source) checkInterfaces() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prog == nil || s.cfg == nil {
		return nil
	}
	changed := changedInterfaces(s.prog)
	if len(changed) == 0 {
		s.setMissing(nil, nil)
		return nil
	}
	prog, err := s.compile(s.cfg)
	if err == nil {
		err = s.apply(prog)
	}
	if err != nil {
		s.setMissing(changed, err)
		return nil
	}
	slog.Warn("source interface re-created: mirrored again", "interfaces", changed)
	s.setMissing(nil, nil)
	return nil
}

// changedInterfaces names prog's interfaces that no longer exist under the
// index prog attached to.
func changedInterfaces(prog *Program) []string {
	var out []string
	for ifindex, name := range prog.IfNames {
		if l, err := netlink.LinkByName(name); err != nil || l.Attrs().Index != int(ifindex) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// setMissing records the interfaces whose traffic is not mirrored, logging
// a change of them.
func (s *Source) setMissing(names []string, why error) {
	if slices.Equal(names, s.missing) {
		return
	}
	if len(names) > 0 {
		slog.Error("source interface gone: its traffic is not mirrored until it is back", "interfaces", names, "err", why)
	} else {
		slog.Info("every source interface is mirrored again")
	}
	s.missing = names
}

// missingError is what Ready says while source interfaces are missing.
func missingError(names []string) error {
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("source interface %s is gone: its traffic is not mirrored", strings.Join(names, ", "))
}
