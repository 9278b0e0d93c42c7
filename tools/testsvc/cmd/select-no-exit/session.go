package main

import (
	"sync"
	"sync/atomic"
)

// Session is one websocket-like client subscription.
type Session struct {
	id      int
	updates chan string
	errs    chan error
	sent    int
}

// Hub fans device updates out to the open sessions.
type Hub struct {
	mu        sync.Mutex
	active    map[int]*Session
	delivered atomic.Int64
}

func NewHub() *Hub { return &Hub{active: make(map[int]*Session)} }

func (h *Hub) Open(id int) *Session {
	s := &Session{id: id, updates: make(chan string), errs: make(chan error)}
	h.mu.Lock()
	h.active[id] = s
	h.mu.Unlock()
	go s.watch(h)
	return s
}

// Close forgets the session; the watcher has no way to learn about it.
func (h *Hub) Close(s *Session) {
	h.mu.Lock()
	delete(h.active, s.id)
	h.mu.Unlock()
}

// Publish delivers an update to every open session.
func (h *Hub) Publish(msg string) {
	h.mu.Lock()
	targets := make([]*Session, 0, len(h.active))
	for _, s := range h.active {
		targets = append(targets, s)
	}
	h.mu.Unlock()
	for _, s := range targets {
		s.updates <- msg
	}
}

// watch forwards updates to the client. Its select has neither a quit
// channel nor a ctx.Done() case.
func (s *Session) watch(h *Hub) {
	for {
		select { // LEAK-SITE
		case <-s.updates:
			s.sent++
			h.delivered.Add(1)
		case <-s.errs:
			return
		}
	}
}
