package main

import (
	"context"
	"sync/atomic"
	"time"
)

// app is a small healthy service: a few workers on a queue and one ticker
// loop, a fixed goroutine count (about 25 including the runtime's and the
// HTTP server's).
type app struct {
	queue     chan int
	processed atomic.Int64
	flushes   atomic.Int64
}

func newApp(workers int) *app {
	a := &app{queue: make(chan int, 64)}
	for i := 0; i < workers; i++ {
		go a.worker()
	}
	go a.flusher(context.Background(), time.Second)
	return a
}

func (a *app) worker() {
	for v := range a.queue {
		a.processed.Add(int64(v & 1))
	}
}

func (a *app) flusher(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.flushes.Add(1)
		case <-ctx.Done():
			return
		}
	}
}
