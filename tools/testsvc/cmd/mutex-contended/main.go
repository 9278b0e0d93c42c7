// mutex-contended (negative): -workers goroutines contend for one mutex held
// briefly; many wait in sync.Mutex.Lock at any instant but all progress.
package main

import (
	"flag"
	"fmt"
	"time"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	n := flag.Int("workers", 40, "contending goroutines")
	svc := harness.Start()
	r := NewRegistry()
	for i := 0; i < *n; i++ {
		go reporter(r, fmt.Sprintf("c%d", i%8), 5*time.Millisecond)
	}
	svc.Every(func(seq int) { r.Inc("requests", 0) })
	svc.Serve()
}
