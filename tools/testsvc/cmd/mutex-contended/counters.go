package main

import (
	"sync"
	"time"
)

// Registry is one global lock guarding all counters: contended, slow, but
// every holder releases it.
type Registry struct {
	mu       sync.Mutex
	counters map[string]int64
}

func NewRegistry() *Registry { return &Registry{counters: make(map[string]int64)} }

func (r *Registry) Inc(name string, hold time.Duration) {
	r.mu.Lock()
	r.counters[name]++
	time.Sleep(hold) // flushes to disk while holding the lock (slow, not stuck)
	r.mu.Unlock()
}

func reporter(r *Registry, name string, pause time.Duration) {
	for {
		r.Inc(name, 500*time.Microsecond)
		time.Sleep(pause)
	}
}
