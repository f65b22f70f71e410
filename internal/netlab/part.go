// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/xmirror/xmirror/internal/telemetry"
)

// Get fetches http://addr/path from inside the host's namespace: the
// connection is opened on the namespace's thread, then used from anywhere.
func (h *Host) Get(ctx context.Context, addr, path string) (int, []byte, error) {
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := h.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, body, err
}

// Part is an xmirror part (source, lb, collect) running as a process in a lab
// host, serving /metrics and /healthz on Metrics inside the host's namespace.
// The demo, the bench and the tests start every part this way.
type Part struct {
	*Proc
	Host    *Host
	Name    string // source, lb or collect
	Metrics string
}

// StartPart runs command in the host: `xmirror <name> ... --metrics-listen
// <metrics>`, or a wrapper of it such as taskset. WaitHealthy then waits until
// it works.
func (h *Host) StartPart(name, metrics string, command ...string) (*Part, error) {
	if len(command) == 0 {
		return nil, fmt.Errorf("start xmirror %s: no command", name)
	}
	p, err := h.Start(command[0], command[1:]...)
	if err != nil {
		return nil, err
	}
	return &Part{Proc: p, Host: h, Name: name, Metrics: metrics}, nil
}

// WaitHealthy waits until the part's /healthz answers 200: parts answer 503
// until they are attached and their tables are filled, so traffic sent
// afterwards is handled. It fails when the process exits first, ctx ends or
// timeout passes; the process is left running for the caller to stop and read.
func (p *Part) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.Done():
			return fmt.Errorf("xmirror %s exited before it was healthy: %v", p.Name, p.Wait())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		code, _, err := p.Get(ctx, "/healthz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("/healthz answered %d", code)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("xmirror %s not healthy after %s: %w", p.Name, timeout, last)
}

// Get fetches path from the part's metrics server.
func (p *Part) Get(ctx context.Context, path string) (int, []byte, error) {
	return p.Host.Get(ctx, p.Metrics, path)
}

// Scrape reads the part's /metrics.
func (p *Part) Scrape(ctx context.Context) ([]telemetry.Sample, error) {
	code, body, err := p.Get(ctx, "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape xmirror %s on %s: %w", p.Name, p.Host.Name, err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("scrape xmirror %s on %s: status %d", p.Name, p.Host.Name, code)
	}
	return telemetry.ParseText(bytes.NewReader(body))
}

// LogTail is the end of what the part printed, for error messages.
func (p *Part) LogTail(lines int) string {
	all := strings.Split(strings.TrimRight(p.Output(), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
