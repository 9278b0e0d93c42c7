// long-sleepers (negative): -sleepers goroutines sleeping for hours, plus
// short-lived backoff sleepers at -rate that come and go.
package main

import (
	"flag"
	"fmt"
	"sync/atomic"
	"time"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	n := flag.Int("sleepers", 100, "number of long sleepers")
	svc := harness.Start()
	var runs atomic.Int64
	for i := 0; i < *n; i++ {
		go maintenanceLoop(fmt.Sprintf("job-%d", i), time.Duration(1+i%6)*time.Hour, &runs)
	}
	svc.Every(func(int) { go shortTask(50*time.Millisecond, &runs) })
	svc.Serve()
}
