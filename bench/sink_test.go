// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestSinkCounts(t *testing.T) {
	s, err := ListenSink("127.0.0.1:0", 2, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Different source ports spread over the SO_REUSEPORT sockets.
	for c := 0; c < 4; c++ {
		conn, err := net.Dial("udp4", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 25; i++ {
			if _, err := conn.Write(make([]byte, 10)); err != nil {
				t.Fatal(err)
			}
		}
		conn.Close()
	}
	if !waitFor(2*time.Second, func() bool { return s.Counts().Packets == 100 }) {
		t.Errorf("counted %+v, want 100 packets", s.Counts())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	if got := s.Counts(); got.Bytes != 1000 {
		t.Errorf("bytes %d, want 1000", got.Bytes)
	}
}
