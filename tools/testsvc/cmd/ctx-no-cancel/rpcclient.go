package main

import (
	"context"
	"sync"
	"time"
)

// RPCClient calls a backend with a per-call deadline derived from the
// server's lifetime context.
type RPCClient struct {
	base        context.Context
	callTimeout time.Duration

	mu    sync.Mutex
	stats map[string]int
}

func NewRPCClient(base context.Context, callTimeout time.Duration) *RPCClient {
	return &RPCClient{base: base, callTimeout: callTimeout, stats: make(map[string]int)}
}

// Call does one RPC. The cancel func of the per-call context is discarded,
// so the context (registered as a child of c.base, with a live timer) and
// its tracing goroutine stay until the deadline, long after the call is done.
func (c *RPCClient) Call(method string) error {
	ctx, _ := context.WithTimeout(c.base, c.callTimeout)
	go c.traceCall(ctx, method)
	return c.do(ctx, method)
}

func (c *RPCClient) do(ctx context.Context, method string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.stats[method]++
	c.mu.Unlock()
	return nil
}

// traceCall records how the call's context ended.
func (c *RPCClient) traceCall(ctx context.Context, method string) {
	start := time.Now()
	<-ctx.Done() // LEAK-SITE
	c.mu.Lock()
	c.stats[method+" "+ctx.Err().Error()] += int(time.Since(start) / time.Millisecond)
	c.mu.Unlock()
}
