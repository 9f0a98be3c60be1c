package tpmback

import (
	"sync/atomic"
	"testing"
	"time"
)

// setState must finish even when the frontend wins every race for the
// state word. A real frontend would need a vCPU rewriting the word in a
// loop on another CPU, and then only most swaps fail; the replaced cas
// makes every one fail, so an unbounded loop never returns.
func TestSetStateBounded(t *testing.T) {
	orig := cas
	var tries atomic.Int64
	cas = func(addr *uint32, old, new uint32) bool { tries.Add(1); return false }
	defer func() { cas = orig }()
	p := newPage()
	submit(p, tpmCmd(12), 0)
	p[5] = 3 // locality: the frontend's byte, kept when we can
	done := make(chan struct{})
	go func() { setState(p, StateFinish); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("setState still spinning after %d lost swaps", tries.Load())
	}
	if State(p) != StateFinish || p[5] != 3 || tries.Load() != casTries {
		t.Errorf("state %d locality %d after %d swaps", State(p), p[5], tries.Load())
	}
}
