// burst-plateau (negative): -n device handlers connect within -burst of
// startup, then the goroutine count stays flat for ever.
package main

import (
	"flag"
	"time"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	n := flag.Int("n", 600, "devices connecting in the startup burst")
	burst := flag.Duration("burst", 2*time.Second, "duration of the reconnect storm")
	svc := harness.Start()
	r := &Registry{}
	go r.ReconnectStorm(*n, *burst)
	svc.Every(func(seq int) { r.Send(seq, "ping") })
	svc.Serve()
}
