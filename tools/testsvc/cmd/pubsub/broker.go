package main

import (
	"sync"
	"sync/atomic"
)

// Broker broadcasts every event to all subscribers; subscribers spend nearly
// all their time blocked in chan receive, but each receive is answered.
type Broker struct {
	mu   sync.Mutex
	subs []chan string
	seen atomic.Int64
}

func (b *Broker) Subscribe() {
	ch := make(chan string, 1)
	b.mu.Lock()
	b.subs = append(b.subs, ch)
	b.mu.Unlock()
	go b.consume(ch)
}

func (b *Broker) consume(ch <-chan string) {
	for {
		msg := <-ch
		if len(msg) > 0 {
			b.seen.Add(1)
		}
	}
}

func (b *Broker) Publish(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range b.subs {
		ch <- msg
	}
}
