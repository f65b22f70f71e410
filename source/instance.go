// SPDX-License-Identifier: Apache-2.0

package source

import (
	"errors"
	"fmt"

	"github.com/xmirror/xmirror/internal/lock"
)

// ErrRunning means another source runs in this network namespace. A second
// one would mirror every packet again, and would take the first one's VXLAN
// device, replicas and tc filters for what a killed run left behind.
var ErrRunning = errors.New("another xmirror source runs in this network namespace")

// instanceName is the name a running source holds in its network namespace.
const instanceName = "xmirror-source"

// claimInstance takes the network namespace for this source, or says which
// process has it. Call it on a thread in the namespace to mirror.
func claimInstance() (*lock.NS, error) {
	l, err := lock.TakeNS(instanceName)
	if errors.Is(err, lock.ErrHeld) {
		return nil, fmt.Errorf("%w: %s; stop it first", ErrRunning, RunningInstance())
	}
	return l, err
}

// RunningInstance names the source that runs in this network namespace
// ("pid N (comm)"), or says "none".
func RunningInstance() string {
	if who := lock.NSHolder(instanceName); who != "" {
		return who
	}
	return "none"
}
