package main

import (
	"context"
	"errors"
	"math/rand"
	"sync/atomic"
	"time"
)

type record struct {
	name  string
	addrs []string
}

// Resolver asks a (simulated) upstream DNS server with a per-query deadline.
type Resolver struct {
	timeout   time.Duration
	slowEvery int // every Nth upstream answer is slower than the deadline
	answered  atomic.Int64
	timedOut  atomic.Int64
}

var errResolveTimeout = errors.New("resolve: upstream timeout")

func (r *Resolver) query(name string) record {
	d := time.Millisecond
	if rand.Intn(r.slowEvery) == 0 {
		d = 3 * r.timeout
	}
	time.Sleep(d)
	return record{name: name, addrs: []string{"10.0.0.1", "10.0.0.2"}}
}

// Lookup resolves name, giving up after r.timeout. The answer channel is
// unbuffered, so a query that outlives the deadline has nobody to hand its
// answer to.
func (r *Resolver) Lookup(ctx context.Context, name string) (record, error) {
	ch := make(chan record)
	go func() {
		ch <- r.query(name) // LEAK-SITE
	}()
	select {
	case rec := <-ch:
		r.answered.Add(1)
		return rec, nil
	case <-time.After(r.timeout):
		r.timedOut.Add(1)
		return record{}, errResolveTimeout
	case <-ctx.Done():
		return record{}, ctx.Err()
	}
}
