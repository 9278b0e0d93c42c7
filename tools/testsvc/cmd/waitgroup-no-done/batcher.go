package main

import (
	"errors"
	"math/rand"
	"sync"
	"sync/atomic"
)

// Batcher delivers batches of events to a downstream, one goroutine per item.
type Batcher struct {
	failEvery int
	delivered atomic.Int64
	failed    atomic.Int64
}

var errDownstream = errors.New("downstream: 503")

func (b *Batcher) deliver(item string) error {
	if rand.Intn(b.failEvery) == 0 {
		return errDownstream
	}
	b.delivered.Add(1)
	return nil
}

// Flush delivers items in parallel. The error path returns without
// wg.Done(), so one failed item makes Flush wait forever.
func (b *Batcher) Flush(items []string) int {
	var wg sync.WaitGroup
	var failed atomic.Int32
	for _, it := range items {
		wg.Add(1)
		go func(it string) {
			if err := b.deliver(it); err != nil {
				failed.Add(1)
				b.failed.Add(1)
				return
			}
			wg.Done()
		}(it)
	}
	wg.Wait() // LEAK-SITE
	return int(failed.Load())
}
