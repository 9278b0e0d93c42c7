package main

import (
	"sync"
	"time"
)

// Account is one balance with its own lock.
type Account struct {
	mu      sync.Mutex
	name    string
	balance int64
}

type transfer struct {
	from, to *Account
	amount   int64
}

// Ledger applies transfers on a small fixed set of workers.
type Ledger struct {
	queue   chan transfer
	applied int64
}

func NewLedger(workers int) *Ledger {
	l := &Ledger{queue: make(chan transfer)}
	for i := 0; i < workers; i++ {
		go l.worker()
	}
	return l
}

func (l *Ledger) worker() {
	for t := range l.queue {
		l.apply(t)
	}
}

// apply locks the payer first, then the payee. A payment and a refund
// between the same two accounts, applied concurrently, lock in opposite
// orders and deadlock; afterwards Submit blocks too.
func (l *Ledger) apply(t transfer) {
	t.from.mu.Lock()
	defer t.from.mu.Unlock()
	// write the audit record for the debit while holding the payer
	time.Sleep(2 * time.Millisecond)
	t.to.mu.Lock() // LEAK-SITE
	defer t.to.mu.Unlock()
	t.from.balance -= t.amount
	t.to.balance += t.amount
	l.applied++
}

// Submit queues a transfer for the workers.
func (l *Ledger) Submit(from, to *Account, amount int64) {
	l.queue <- transfer{from: from, to: to, amount: amount}
}
