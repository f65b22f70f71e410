// SPDX-License-Identifier: Apache-2.0

package bgp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"unicode"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// slogLogger hands GoBGP's log lines to the process's slog logger, so the
// speaker logs like the rest of xmirror. GoBGP's info lines are chatty per
// message and go to debug.
//
// GoBGP tells why a session fails (a connection refused or timed out, a
// NOTIFICATION sent or received) only in its log, not through its API:
// sessionFailed, when set, is handed each such reason with the router's
// address.
type slogLogger struct {
	sessionFailed func(peer, reason string)
}

func attrs(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f)+2)
	out = append(out, "component", "gobgp")
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}

func (l slogLogger) Panic(msg string, f gobgplog.Fields) { slog.Error(msg, attrs(f)...) }
func (l slogLogger) Fatal(msg string, f gobgplog.Fields) { slog.Error(msg, attrs(f)...) }
func (l slogLogger) Error(msg string, f gobgplog.Fields) { slog.Error(msg, attrs(f)...) }
func (l slogLogger) Warn(msg string, f gobgplog.Fields) {
	l.note(msg, f)
	slog.Warn(msg, attrs(f)...)
}
func (l slogLogger) Info(msg string, f gobgplog.Fields) {
	l.note(msg, f)
	slog.Debug(msg, attrs(f)...)
}
func (l slogLogger) Debug(msg string, f gobgplog.Fields) {
	l.note(msg, f)
	slog.Debug(msg, attrs(f)...)
}

func (slogLogger) SetLevel(gobgplog.LogLevel) {}

func (slogLogger) GetLevel() gobgplog.LogLevel { return gobgplog.DebugLevel }

// note passes a session's failure on to sessionFailed.
func (l slogLogger) note(msg string, f gobgplog.Fields) {
	if l.sessionFailed == nil {
		return
	}
	peer, _ := f["Key"].(string)
	if reason := sessionFailure(msg, f); reason != "" && peer != "" {
		l.sessionFailed(peer, reason)
	}
}

// sessionFailure is why a session with a router failed, from one of
// GoBGP's log lines, or "" when the line says no such thing.
func sessionFailure(msg string, f gobgplog.Fields) string {
	switch msg {
	case "failed to connect": // a debug line, repeated every connect retry
		err, _ := f["Error"].(error)
		if err == nil {
			return ""
		}
		reason := "cannot connect: " + err.Error()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			// A segment whose TCP MD5 signature the router does not expect
			// (or lacks one it does) is dropped without an answer.
			reason += " (no answer: a TCP MD5 password only one side has, or two that differ, drops the connection silently; or a filter)"
		case errors.Is(err, syscall.EHOSTUNREACH):
			// GoBGP sends to an eBGP router with TTL 1: a router that
			// forwards the SYN answers time exceeded, which TCP reports
			// so, while a ping to the same address works.
			reason += " (no neighbour answers for it, or an eBGP router more than one hop away: the node sends to eBGP routers with TTL 1)"
		}
		return reason
	case "sent notification":
		code, sub, text, ok := notification(f)
		switch {
		case !ok || code == bgp.BGP_ERROR_CEASE:
			// Cease is what the speaker itself sends when a peer is removed
			// or the node stops.
			return ""
		case code == bgp.BGP_ERROR_HOLD_TIMER_EXPIRED:
			return holdTimerExpired
		}
		return withText(sentNotification+codeName(code, sub), text)
	case "received notification": // in an established session, with its data
		code, sub, text, ok := notification(f)
		if !ok {
			return ""
		}
		return withText(routerSent+codeName(code, sub), text)
	case "state changed": // a debug line, with GoBGP's reason for leaving the state
		reason := fmt.Sprint(f["reason"])
		switch {
		case strings.HasPrefix(reason, "notification-received "):
			// a NOTIFICATION before the session was established (a wrong
			// ASN, say): GoBGP logs only its code here
			return routerSent + compactCode(strings.TrimPrefix(reason, "notification-received "))
		case reason == "read-failed" || reason == "write-failed":
			return "the connection to the router was closed or reset (" + strings.Replace(reason, "-", " ", 1) + ")"
		case reason == "hold-timer-expired":
			return holdTimerExpired
		case reason == "invalid-msg":
			// After our OPEN, anything but an OPEN: GoBGP drops a
			// NOTIFICATION there without a word of its code.
			return routerRefused
		}
	}
	return ""
}

const (
	routerSent       = "the router sent a NOTIFICATION: "
	holdTimerExpired = "hold timer expired: nothing from the router within the hold time"
	sentNotification = "sent a NOTIFICATION: "
	routerRefused    = "the router closed the session after the OPEN, most likely with a NOTIFICATION (a wrong ASN, say): its log says why"
)

// notification reads the code, subcode and text of a NOTIFICATION from a
// GoBGP log line: a *bgp.MessageError in Data, or Code and Subcode with
// the message's data (and an administrative reason for a shutdown).
func notification(f gobgplog.Fields) (code, sub uint8, text string, ok bool) {
	if e, isErr := f["Data"].(*bgp.MessageError); isErr {
		return e.TypeCode, e.SubTypeCode, e.Message, true
	}
	code, ok1 := f["Code"].(uint8)
	sub, ok2 := f["Subcode"].(uint8)
	if !ok1 || !ok2 {
		return 0, 0, "", false
	}
	text, _ = f["Communicated-Reason"].(string)
	if data, _ := f["Data"].([]byte); text == "" && printable(data) {
		text = string(data)
	}
	return code, sub, text, true
}

// codeName is "open/bad peer as" for code 2, subcode 2.
func codeName(code, sub uint8) string {
	return compactCode(bgp.NewNotificationErrorCode(code, sub).String())
}

// compactCode is "open/bad peer as" from GoBGP's
// "code 2(open) subcode 2(bad peer as)".
func compactCode(s string) string {
	var names []string
	for part := range strings.SplitSeq(s, "(") {
		if name, _, ok := strings.Cut(part, ")"); ok {
			names = append(names, name)
		}
	}
	if len(names) != 2 {
		return s
	}
	return names[0] + "/" + names[1]
}

// withText adds a NOTIFICATION's text, if any, so that the reason without
// it is a prefix of the reason with it (see Speaker.sessionFailed).
func withText(reason, text string) string {
	if text = strings.TrimSpace(text); text != "" {
		reason += ": " + text
	}
	return reason
}

func printable(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
