package main

import (
	"context"
	"sync/atomic"
	"time"
)

// Poller samples one sensor on a ticker until its context ends.
type Poller struct {
	sensor  int
	every   time.Duration
	samples *atomic.Int64
}

func (p *Poller) Run(ctx context.Context) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.samples.Add(1)
		case <-ctx.Done():
			return
		}
	}
}
