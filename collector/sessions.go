// SPDX-License-Identifier: Apache-2.0

package collector

// The sessions of a collector: a series per (protocol, id), named from the
// configuration (or vni-N, geneve-N, erspan-N, gre-N), bounded by
// MaxSessions for sessions it does not name, forgotten when idle, renamed
// on reload.

import (
	"path/filepath"
	"strings"
	"time"
)

// sessionName returns the unique sanitised file name prefix of a session.
// Called with c.mu held for writing, or before readers start.
func (c *Collector) sessionName(key Key, configured string) string {
	fallback := key.fallbackName()
	name := SanitizeName(configured)
	if name == "" {
		name = fallback
	}
	if other, ok := c.names[name]; ok && other != key {
		name = name + "-" + fallback
	}
	c.names[name] = key
	return name
}

// SanitizeName makes a session name safe as a directory and file name: only
// letters, digits, '.', '_' and '-' survive (others become '_'), no leading
// dot, at most 100 bytes. It returns "" when nothing usable is left.
func SanitizeName(s string) string {
	b := []byte(s)
	if len(b) > 100 {
		b = b[:100]
	}
	for i, ch := range b {
		ok := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
			ch == '.' || ch == '_' || ch == '-'
		if !ok {
			b[i] = '_'
		}
	}
	out := string(b)
	for len(out) > 0 && out[0] == '.' {
		out = out[1:]
	}
	if out == "" || filepath.Base(out) != out {
		return ""
	}
	return out
}

// seriesFor returns the series of a session, creating it on first use, or
// nil and the reason when its packets are dropped.
func (c *Collector) seriesFor(key Key) (*series, Reason) {
	c.mu.RLock()
	s := c.series[key]
	_, known := c.opts.Named[key]
	c.mu.RUnlock()
	if s != nil {
		return s, ReasonNone
	}
	if !known && c.opts.DropUnknownVNI {
		return nil, ReasonUnknownVNI
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s = c.series[key]; s == nil {
		conf, known := c.opts.Named[key]
		if !known && c.unnamed >= c.opts.MaxSessions {
			c.limitReached()
			return nil, ReasonSessionLimit
		}
		if !known {
			c.unnamed++
		}
		s = newSeries(c, key, c.sessionName(key, conf.Name), known)
		c.series[key] = s
	}
	return s, ReasonNone
}

// Reload replaces the sessions' names and packet lengths (SIGHUP). A
// series whose name, packet length or standing (named or not) changes is
// closed and forgotten; its next packet starts it again under the new
// settings. Packets received before the call are written under the old
// settings.
func (c *Collector) Reload(named map[Key]Session) {
	c.syncWriters()
	defer c.warnNameLengths(named) // after the unlock: it reads the names
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opts.Named = named
	for key, s := range c.series {
		conf, known := named[key]
		want := SanitizeName(conf.Name)
		if !known || want == "" {
			want = key.fallbackName()
		}
		if known == s.named && strings.HasPrefix(s.name, want) && conf.PacketLength == s.snap {
			continue
		}
		delete(c.series, key)
		if !s.named {
			c.unnamed--
		}
		s.mu.Lock()
		s.evictLocked("reload")
		s.mu.Unlock()
	}
	c.names = make(map[string]Key)
	for key, s := range c.series {
		c.names[s.name] = key
	}
	for key, conf := range named {
		if c.series[key] == nil {
			c.sessionName(key, conf.Name)
		}
	}
	if err := c.startSessionTaps(); err != nil {
		c.log.Error("reload: per-session TAP device", "err", err)
	}
	c.log.Info("sessions reloaded", "sessions", len(named), "open", len(c.series))
	c.warnUnreceived(named)
}

// warnNameLengths logs, after a reload, a configured session whose file
// names are too long to be created (New refuses them at start).
func (c *Collector) warnNameLengths(named map[Key]Session) {
	if err := c.checkNameLengths(named); err != nil {
		c.log.Error("reload: a session's files cannot be created; its packets are dropped as write_error", "err", err)
	}
}

// limitReached logs the session_limit drops, at most once per
// RetryInterval. Called with c.mu held.
func (c *Collector) limitReached() {
	c.limitN++
	c.logLimitLocked(c.now())
}

// logLimitLocked logs the session_limit drops not logged yet, unless the
// last line is younger than RetryInterval. The ticker calls it too, so
// that the drops after the first line of a flood shorter than the
// interval are logged once it has passed, not only at the next drop.
func (c *Collector) logLimitLocked(now time.Time) {
	if c.limitN > 0 && now.Sub(c.limitLog) >= c.opts.RetryInterval {
		c.log.Warn("session limit reached: packets of new sessions dropped until a session is idle",
			"max_sessions", c.opts.MaxSessions, "session_idle", c.opts.SessionIdle, "dropped", c.limitN)
		c.limitLog, c.limitN = now, 0
	}
}

// logLimit is logLimitLocked for the ticker.
func (c *Collector) logLimit(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logLimitLocked(now)
}

// evictIdle forgets the idle series of VNIs not in Sessions, freeing their
// places under MaxSessions.
func (c *Collector) evictIdle(idle []*series) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var closed []string
	for _, s := range idle {
		if s.named || c.series[s.key] != s {
			continue
		}
		s.mu.Lock()
		if s.f == nil && s.pendPkts == 0 { // no packet arrived since the tick saw it idle
			delete(c.series, s.key)
			delete(c.names, s.name)
			c.unnamed--
			s.evictLocked("idle")
			closed = append(closed, s.name)
		}
		s.mu.Unlock()
	}
	// One line per tick, however many a flood of VNIs leaves idle at once.
	if len(closed) > 0 {
		c.log.Info("idle sessions closed", "count", len(closed), "first", closed[0], "open", len(c.series))
	}
}

// sessionNames are the directory names of the configured sessions and
// the open ones.
func (c *Collector) sessionNames() map[string]bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]bool, len(c.names))
	for name := range c.names {
		out[name] = true
	}
	return out
}

func (c *Collector) allSeries() []*series {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*series, 0, len(c.series))
	for _, s := range c.series {
		out = append(out, s)
	}
	return out
}

// Rotate closes every open file, after the writers wrote every packet
// received before the call; the next packet of each session opens a new
// one. It returns once the closed files are compressed, pruned and handed
// to the post-rotate command (or after 10 seconds).
func (c *Collector) Rotate() {
	c.syncWriters()
	for _, s := range c.allSeries() {
		s.rotate("requested")
	}
	c.waitClosedWork(false)
}
