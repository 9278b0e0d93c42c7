package main

import (
	"errors"
	"sync"
	"sync/atomic"
)

// call is one request waiting for its reply from the connection's dispatcher.
type call struct {
	req   string
	mu    sync.Mutex
	cond  *sync.Cond
	done  bool
	reply string
	err   error
}

// Conn multiplexes requests over one (simulated) backend connection.
type Conn struct {
	pending   chan *call
	failEvery int
	seq       atomic.Int64
}

func NewConn(failEvery int) *Conn {
	c := &Conn{pending: make(chan *call, 1024), failEvery: failEvery}
	go c.dispatch()
	return c
}

var errBackendReset = errors.New("backend: connection reset")

func (c *Conn) exchange(req string) (string, error) {
	if c.seq.Add(1)%int64(c.failEvery) == 0 {
		return "", errBackendReset
	}
	return "ok " + req, nil
}

// dispatch completes pending calls. On the error path it marks the call done
// but forgets to Signal, so the waiter sleeps forever.
func (c *Conn) dispatch() {
	for cl := range c.pending {
		reply, err := c.exchange(cl.req)
		cl.mu.Lock()
		cl.done = true
		if err != nil {
			cl.err = err
			cl.mu.Unlock()
			continue
		}
		cl.reply = reply
		cl.mu.Unlock()
		cl.cond.Signal()
	}
}

// Do sends req and waits for its reply.
func (c *Conn) Do(req string) (string, error) {
	cl := &call{req: req}
	cl.cond = sync.NewCond(&cl.mu)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	c.pending <- cl
	for !cl.done {
		cl.cond.Wait() // LEAK-SITE
	}
	return cl.reply, cl.err
}
