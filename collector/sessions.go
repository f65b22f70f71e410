// SPDX-License-Identifier: Apache-2.0

package collector

// The sessions of a collector: a series per VNI, named from the
// configuration (or vni-N), bounded by MaxSessions for VNIs it does not
// name, forgotten when idle, renamed on reload.

import (
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// sessionName returns the unique sanitised file name prefix of a VNI.
// Called with c.mu held for writing, or before readers start.
func (c *Collector) sessionName(vni uint32, configured string) string {
	fallback := "vni-" + strconv.FormatUint(uint64(vni), 10)
	name := SanitizeName(configured)
	if name == "" {
		name = fallback
	}
	if other, ok := c.names[name]; ok && other != vni {
		name = name + "-" + fallback
	}
	c.names[name] = vni
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

// seriesFor returns the series of a VNI, creating it on first use, or nil
// and the reason when its packets are dropped.
func (c *Collector) seriesFor(vni uint32) (*series, Reason) {
	c.mu.RLock()
	s := c.series[vni]
	_, known := c.opts.Sessions[vni]
	c.mu.RUnlock()
	if s != nil {
		return s, ReasonNone
	}
	if !known && c.opts.DropUnknownVNI {
		return nil, ReasonUnknownVNI
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s = c.series[vni]; s == nil {
		name, known := c.opts.Sessions[vni]
		if !known && c.unnamed >= c.opts.MaxSessions {
			c.limitReached()
			return nil, ReasonSessionLimit
		}
		if !known {
			c.unnamed++
		}
		s = newSeries(c, vni, c.sessionName(vni, name), known)
		c.series[vni] = s
	}
	return s, ReasonNone
}

// Reload replaces the session names and packet lengths (SIGHUP). A series
// whose name, packet length or standing (named or not) changes is closed
// and forgotten; its next packet starts it again under the new settings.
// Packets received before the call are written under the old settings.
func (c *Collector) Reload(sessions map[uint32]string, packetLengths map[uint32]int) {
	c.syncWriters()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opts.Sessions, c.opts.PacketLengths = sessions, packetLengths
	for vni, s := range c.series {
		name, known := sessions[vni]
		want := SanitizeName(name)
		if !known || want == "" {
			want = "vni-" + strconv.FormatUint(uint64(vni), 10)
		}
		if known == s.named && strings.HasPrefix(s.name, want) && packetLengths[vni] == s.snap {
			continue
		}
		delete(c.series, vni)
		if !s.named {
			c.unnamed--
		}
		s.mu.Lock()
		s.evictLocked("reload")
		s.mu.Unlock()
	}
	c.names = make(map[string]uint32)
	for vni, s := range c.series {
		c.names[s.name] = vni
	}
	for vni, name := range sessions {
		if c.series[vni] == nil {
			c.sessionName(vni, name)
		}
	}
	if err := c.startSessionTaps(); err != nil {
		c.log.Error("reload: per-session TAP device", "err", err)
	}
	c.log.Info("sessions reloaded", "sessions", len(sessions), "open", len(c.series))
}

// limitReached logs the session_limit drops, at most once per
// RetryInterval. Called with c.mu held.
func (c *Collector) limitReached() {
	c.limitN++
	if now := c.now(); now.Sub(c.limitLog) >= c.opts.RetryInterval {
		c.log.Warn("session limit reached: packets of new VNIs dropped until a session is idle",
			"max_sessions", c.opts.MaxSessions, "session_idle", c.opts.SessionIdle, "dropped", c.limitN)
		c.limitLog, c.limitN = now, 0
	}
}

// evictIdle forgets the idle series of VNIs not in Sessions, freeing their
// places under MaxSessions.
func (c *Collector) evictIdle(idle []*series) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var closed []string
	for _, s := range idle {
		if s.named || c.series[s.vni] != s {
			continue
		}
		s.mu.Lock()
		if s.f == nil && s.pendPkts == 0 { // no packet arrived since the tick saw it idle
			delete(c.series, s.vni)
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
	waitTimeout(&c.post, 10*time.Second)
}
