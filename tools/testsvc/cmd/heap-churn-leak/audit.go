package main

import (
	"sync"
	"time"
)

type auditEntry struct {
	seq    int
	at     time.Time
	result int
	detail []byte // the request as received, kept "for debugging"
}

// AuditLog records every handled request. Nothing ever trims it: the leak.
type AuditLog struct {
	mu      sync.Mutex
	entries []*auditEntry
}

func (l *AuditLog) Record(seq, result, size int) {
	e := &auditEntry{seq: seq, at: time.Now(), result: result}
	e.detail = make([]byte, size) // LEAK-SITE
	for i := 0; i < size; i += 256 {
		e.detail[i] = byte(seq)
	}
	l.mu.Lock()
	l.entries = append(l.entries, e)
	l.mu.Unlock()
}
