// SPDX-License-Identifier: Apache-2.0

package source

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/nsthread"
)

// ifaceEvery is how often the source looks at its source interfaces (a
// variable for tests).
var ifaceEvery = time.Second

// ifaceKeeper follows the source interfaces of the running configuration.
// A program is attached to an interface by index: when the interface is
// deleted its program goes with it, and an interface re-created under the
// same name is a new index that nothing mirrors. The copies' outer source is
// the interface's address, and its offloads decide whether outbound copies
// need a replica. So when any of that changes the keeper applies the
// configuration again, with the interfaces that can be sources now; each one
// that cannot (gone, or without IPv4 address) is left out and reported
// until it can, and does not hold up the others.
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

// errGone is why a source interface that does not exist is not mirrored.
var errGone = errors.New("it is gone")

// checkInterfaces looks at every source interface of the running
// configuration and, when the running program no longer matches them,
// applies the configuration again without the ones that cannot be sources.
// It runs in the source's namespace.
func (s *Source) checkInterfaces() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prog == nil || s.cfg == nil {
		return nil
	}
	now := map[string]ifaceFacts{}
	unusable := map[string]error{}
	for _, name := range sourceNames(s.cfg) {
		f, problems, err := resolveInterface(name)
		switch {
		case err != nil:
			return err // not known: keep what runs
		case f.ifindex == 0:
			unusable[name] = errGone
		case len(problems) > 0:
			unusable[name] = errors.Join(problems...)
		default:
			now[name] = f
		}
	}
	changed := s.prog.differsFrom(now)
	changed = append(changed, s.prog.pathsChanged()...)
	var applyErr error
	if len(changed) > 0 {
		prog, err := s.compile(withoutSources(s.cfg, unusable))
		if err == nil {
			err = s.apply(prog)
		}
		if applyErr = err; err == nil {
			slog.Warn("source interfaces or paths changed: configuration applied again", "changed", changed)
		} else if err.Error() != s.applyFailed {
			// A target without route, say: what runs stays, and the
			// interfaces it does not hold are not mirrored. Tried again
			// every time, logged when the reason changes.
			slog.Warn("source interfaces or paths changed, and the configuration cannot be applied again", "changed", changed, "err", err)
		}
	}
	s.applyFailed = ""
	if applyErr != nil {
		s.applyFailed = applyErr.Error()
	}
	// What the running program does not mirror, and why. A usable
	// interface it does not hold is one the last apply failed for.
	missing := maps.Clone(unusable)
	for name, f := range now {
		if s.prog.IfNames[uint32(f.ifindex)] != name && applyErr != nil {
			missing[name] = fmt.Errorf("the configuration cannot be applied to it again: %w", applyErr)
		}
	}
	s.setMissing(missing)
	return nil
}

// differsFrom names the interfaces whose state (index, outer source,
// offloads) the program was not compiled for: gone or unusable ones it
// holds, and usable ones it lacks or holds as they were.
func (p *Program) differsFrom(now map[string]ifaceFacts) []string {
	var out []string
	for ifindex, name := range p.IfNames {
		if f, ok := now[name]; !ok || f.ifindex != int(ifindex) {
			out = append(out, name)
		}
	}
	for name, f := range now {
		ifindex := uint32(f.ifindex)
		if p.IfNames[ifindex] != name {
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
			continue
		}
		if p.Ifaces[ifindex].Local != addrWord(f.local) || p.Offloads[ifindex] != f.offloads || p.RxAggr[ifindex] != f.rxAggr {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// pathsChanged describes the targets whose path MTU is not the one the
// program was compiled for: their copies would be cut too long for the
// path, or shorter than it carries. A target without route now is the
// health watch's (no_route), not a change to apply.
func (p *Program) pathsChanged() []string {
	var out []string
	seen := map[uint32]bool{}
	for id, sess := range p.Sessions {
		if seen[sess.Remote] {
			continue
		}
		seen[sess.Remote] = true
		target := netip.AddrFrom4(wordBytes(sess.Remote))
		if mtu, err := pathMTU(target); err == nil && mtu != p.PathMTU[id] {
			out = append(out, fmt.Sprintf("path MTU to %s %d -> %d", target, p.PathMTU[id], mtu))
		}
	}
	slices.Sort(out)
	return out
}

// sourceNames lists the source interfaces of cfg's enabled sessions.
func sourceNames(cfg *config.Config) []string {
	var names []string
	for _, s := range enabledSessions(cfg) {
		for _, n := range s.Sources {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return names
}

// withoutSources is cfg without the source interfaces named in drop; a
// session left without any is disabled (it keeps its counters).
func withoutSources(cfg *config.Config, drop map[string]error) *config.Config {
	if len(drop) == 0 {
		return cfg
	}
	out := *cfg
	out.Sessions = slices.Clone(cfg.Sessions)
	for i := range out.Sessions {
		s := &out.Sessions[i]
		kept := slices.DeleteFunc(slices.Clone(s.Sources), func(n string) bool { return drop[n] != nil })
		if len(kept) == 0 {
			s.Enabled = false
			continue
		}
		s.Sources = kept
	}
	return &out
}

// setMissing records the source interfaces that are not mirrored and why,
// logging a change.
func (s *Source) setMissing(missing map[string]error) {
	same := len(missing) == len(s.missing)
	for name, why := range missing {
		old, ok := s.missing[name]
		if !ok || old.Error() != why.Error() {
			same = false
			slog.Error("source interface not mirrored: its traffic is lost until it can be mirrored again", "interface", name, "why", why)
		}
	}
	if same {
		return
	}
	if len(missing) == 0 {
		slog.Info("every source interface is mirrored again")
	}
	s.missing = missing
}

// missingError is what Ready says while source interfaces are not mirrored.
func missingError(missing map[string]error) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(missing)) {
		if missing[name] == errGone {
			errs = append(errs, fmt.Errorf("source interface %s is gone: its traffic is not mirrored", name))
			continue
		}
		errs = append(errs, fmt.Errorf("source interface %s is not mirrored: %w", name, missing[name]))
	}
	return errors.Join(errs...)
}
