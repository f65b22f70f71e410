// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Command prepares name args... to run inside the host's namespace. It uses
// `nsenter --net` rather than `ip netns exec`, which would also remount /sys and
// hide the machine's bpffs (pinned BPF objects) from the command.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return command(ctx, h, name, args...)
}

// command prepares name args... in h's namespace, or this process's when h is nil.
func command(ctx context.Context, h *Host, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	if h != nil {
		full := append([]string{"--net=" + filepath.Join(netnsDir, h.NS), "--", name}, args...)
		cmd = exec.CommandContext(ctx, "nsenter", full...)
	}
	// Children die with the test process, and a process group lets Close kill what
	// they started in turn.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Run runs a command in the host's namespace and returns its combined output; the
// error carries the output too.
func (h *Host) Run(name string, args ...string) (string, error) {
	out, err := h.Command(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), h.Name, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Start runs a command in the background in the host's namespace. The lab kills it
// on Close if it is still running.
func (h *Host) Start(name string, args ...string) (*Proc, error) {
	p, err := start(h.Command(context.Background(), name, args...))
	if err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, h.Name, err)
	}
	h.lab.mu.Lock()
	h.lab.procs = append(h.lab.procs, p)
	h.lab.mu.Unlock()
	return p, nil
}

// start runs cmd in the background, its output collected.
func start(cmd *exec.Cmd) (*Proc, error) {
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	p.Cmd.Stdout = &p.out
	p.Cmd.Stderr = &p.out
	// The kernel sends Pdeathsig when the thread that forked exits, not the
	// process, and Go ends a thread whose goroutine exits locked to it (as
	// xmirror's sending threads do when a source closes). So the fork and
	// the wait run on a thread kept for the process's lifetime: a
	// background process must not die because some other goroutine ended.
	started := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := p.Cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// Proc is a background process started by Host.Start.
type Proc struct {
	Cmd  *exec.Cmd
	out  SyncBuffer
	done chan struct{}
	err  error
}

// Output is everything the process wrote to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Wait waits for the process to exit and returns its error.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Stop asks the process to end (SIGTERM), kills it after 10 seconds, and returns how
// it exited (nil for a clean exit after SIGTERM).
func (p *Proc) Stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(10 * time.Second):
		p.kill()
		return fmt.Errorf("%s did not stop within 10s after SIGTERM; killed", p.Cmd.Path)
	}
}

func (p *Proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	p.Cmd.Process.Kill()
	<-p.done
}

// SyncBuffer is a buffer one goroutine writes (a process's output, a log)
// while others read it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
