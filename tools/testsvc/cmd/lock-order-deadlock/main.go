// lock-order-deadlock: two ledger workers lock accounts in opposite order
// during the first settlement run (event 100); afterwards every user
// goroutine is blocked while the HTTP server keeps the runtime from noticing.
package main

import (
	"edgetrace/testsvc/internal/harness"
)

func main() {
	svc := harness.Start()
	l := NewLedger(2)
	customer := &Account{name: "customer", balance: 1 << 30}
	merchant := &Account{name: "merchant"}
	svc.Every(func(seq int) {
		l.Submit(customer, merchant, 100)
		if seq%100 == 99 { // settlement run: refund while a payment is in flight
			l.Submit(merchant, customer, 40)
		}
	})
	svc.Serve()
}
