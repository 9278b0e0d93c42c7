// basic: the thin-slice service. A fixed, small number of goroutines
// (-workers (20) idle workers + a ticker loop + HTTP/runtime: about 25 goroutines), no leak.
package main

import (
	"flag"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	workers := flag.Int("workers", 20, "queue workers")
	svc := harness.Start()
	a := newApp(*workers)
	svc.Every(func(seq int) { a.queue <- seq })
	svc.Serve()
}
