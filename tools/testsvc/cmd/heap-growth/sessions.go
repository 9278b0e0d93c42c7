package main

import (
	"sync"
	"time"
)

type session struct {
	id      int
	user    string
	created time.Time
	closed  bool
	scratch []byte // per-session read buffer
}

// SessionStore tracks login sessions. Close marks a session closed but the
// entry (and its buffer) is never removed from the map.
type SessionStore struct {
	mu       sync.Mutex
	sessions map[int]*session
	bufSize  int
}

func NewSessionStore(bufSize int) *SessionStore {
	return &SessionStore{sessions: make(map[int]*session), bufSize: bufSize}
}

func (st *SessionStore) Open(id int, user string) *session {
	s := &session{id: id, user: user, created: time.Now()}
	s.scratch = make([]byte, st.bufSize) // LEAK-SITE
	for i := 0; i < len(s.scratch); i += 512 {
		s.scratch[i] = byte(id)
	}
	st.mu.Lock()
	st.sessions[id] = s
	st.mu.Unlock()
	return s
}

func (st *SessionStore) Close(s *session) {
	st.mu.Lock()
	s.closed = true
	st.mu.Unlock()
}
