// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Options says where and how the load balancer runs.
type Options struct {
	// PinPath holds the maps and links so a restart keeps forwarding; "" pins
	// nothing (the program then lives as long as the Balancer). The process
	// holds an exclusive lock on it while the Balancer is open.
	PinPath string
	// XDPMode is auto (native, else generic), native or generic.
	XDPMode string
	// DetachOnExit removes the program and the pins on Close.
	DetachOnExit bool
	// OnReady, if set, is told whether some backend takes new flows, once
	// after the first Apply and after every change of it (weights, health,
	// reloads). It runs with the Balancer's lock held: it must not call the
	// Balancer.
	OnReady func(ready bool)
}

// New takes the pin path's lock and loads the program, reusing pinned maps
// from an earlier run. A failure leaves the pin path as it was.
func New(opts Options) (_ *Balancer, err error) {
	b := &Balancer{opts: opts, ids: make(map[string]uint32), freedAt: make(map[uint32]time.Time), healthy: make(map[string]bool), wasDown: make(map[string]bool),
		pending: make(map[string]bool)}
	if opts.PinPath != "" {
		if err := ensureBPFFS(opts.PinPath, !opts.DetachOnExit); err != nil {
			return nil, err
		}
		if b.lock, err = lockPinPath(opts.PinPath); err != nil {
			return nil, err
		}
		_, statErr := os.Stat(filepath.Join(opts.PinPath, "lb_active"))
		b.pinnedBefore = statErr == nil
	}
	if b.objs, err = loadObjects(opts.PinPath); err != nil {
		if !b.pinnedBefore && opts.PinPath != "" {
			// loading pins maps as it creates them, before it fails
			err = errors.Join(err, removePins(opts.PinPath))
		}
		b.lock.release()
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.Abort())
		}
	}()
	if b.activeBefore, err = b.activeSlot(); err != nil {
		return nil, err
	}
	if err := b.syncActiveSlot(); err != nil {
		return nil, err
	}
	if err := b.recoverIDs(); err != nil {
		return nil, err
	}
	return b, nil
}

// Close stops health checks and releases the program and the pin path's
// lock. Pinned links and maps stay (the data path keeps running) unless
// DetachOnExit is set.
func (b *Balancer) Close() error {
	b.stopHealthChecks()
	var errs []error
	for _, l := range b.links {
		if b.opts.DetachOnExit && b.opts.PinPath != "" {
			if err := l.Unpin(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if b.opts.DetachOnExit && b.opts.PinPath != "" {
		for _, m := range b.mapsByName() {
			if err := m.Unpin(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, b.release())
	if b.opts.DetachOnExit && b.opts.PinPath != "" {
		if err := removePins(b.opts.PinPath); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Abort undoes a start that failed part way, leaving the pin path as New
// found it: links this process made are removed, links it took over from a
// previous run get that run's program back, and either the pins it created
// are removed or, when a previous run's pins were there, the slot that run
// had made live is live again. The Balancer cannot be used afterwards.
func (b *Balancer) Abort() error {
	b.stopHealthChecks()
	var errs []error
	for name, l := range b.links {
		errs = append(errs, undoLink(name, l, b.prevProgs[name], b.opts.PinPath != ""))
	}
	b.links = nil
	if b.opts.PinPath != "" && b.pinnedBefore {
		if err := b.objs.LbActive.Put(uint32(0), b.activeBefore); err != nil {
			errs = append(errs, fmt.Errorf("restore the active slot: %w", err))
		}
		// No link runs this process's program any longer.
		if id, err := programID(b.objs.XmirrorLb); err == nil {
			if err := os.Remove(progPin(b.opts.PinPath, id)); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, b.release())
	if b.opts.PinPath != "" && !b.pinnedBefore {
		errs = append(errs, removePins(b.opts.PinPath))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("undo a failed start: %w", err)
	}
	slog.Info("undid a failed start", "pin_path", b.opts.PinPath, "previous_run_kept", b.pinnedBefore)
	return nil
}

// Started ends the start: it can no longer be undone, so the programs the
// previous run's pinned links ran, kept for Abort to put back, are closed.
// Held for the life of the process, each restart left the stopped run's
// program loaded (with its own .rodata and .bss) while nothing ran it
// (TestRestartFreesPreviousProgram).
func (b *Balancer) Started() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.prevProgs {
		p.Close()
	}
	b.prevProgs = nil
	if b.opts.PinPath != "" {
		if id, err := programID(b.objs.XmirrorLb); err != nil {
			slog.Warn("the previous runs' program pins stay", "err", err)
		} else if err := unpinOtherPrograms(b.opts.PinPath, id); err != nil {
			slog.Warn("remove the previous runs' program pins", "err", err)
		}
	}
}

// undoLink gives a link taken over from a previous run its program back,
// or removes a link this process made (unpinned, it detaches on close).
func undoLink(name string, l link.Link, prev *ebpf.Program, pinned bool) error {
	var errs []error
	if prev != nil {
		if err := l.Update(prev); err != nil {
			errs = append(errs, fmt.Errorf("give %s its previous program back: %w", name, err))
		}
	} else if pinned {
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin the link of %s: %w", name, err))
		}
	}
	if err := l.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// release closes the program, the maps and the previous run's programs
// this process held, then drops the pin path's lock.
func (b *Balancer) release() error {
	if b.released {
		return nil
	}
	b.released = true
	for _, p := range b.prevProgs {
		p.Close()
	}
	b.prevProgs = nil
	err := b.objs.Close()
	b.lock.release()
	b.lock = nil
	return err
}

// stopHealthChecks ends the probers; the tables stay as they are.
func (b *Balancer) stopHealthChecks() {
	b.mu.Lock()
	hc := b.hc
	b.hc = nil
	b.mu.Unlock()
	if hc != nil {
		hc.stop()
	}
}

func (b *Balancer) mapsByName() map[string]*ebpf.Map { return mapsOf(&b.objs.lbMaps) }

// mapsOf names every map of the generated bindings by its ebpf tag, which is
// also its pin name, so the list cannot miss a map the object gains.
func mapsOf(m *lbMaps) map[string]*ebpf.Map {
	out := make(map[string]*ebpf.Map)
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		if name := v.Type().Field(i).Tag.Get("ebpf"); name != "" {
			out[name] = v.Field(i).Interface().(*ebpf.Map)
		}
	}
	return out
}
