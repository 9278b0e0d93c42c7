// basic: the thin-slice service. A fixed, small number of goroutines
// (-workers idle workers + a ticker loop + HTTP/runtime), no leak.
package main

import (
	"flag"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	workers := flag.Int("workers", 16, "queue workers")
	svc := harness.Start()
	a := newApp(*workers)
	svc.Every(func(seq int) { a.queue <- seq })
	svc.Serve()
}
