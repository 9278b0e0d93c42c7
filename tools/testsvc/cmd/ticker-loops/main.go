// ticker-loops (negative): -pollers goroutines in ticker/ctx.Done select loops.
package main

import (
	"context"
	"flag"
	"sync/atomic"
	"time"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	n := flag.Int("pollers", 150, "number of ticker loops")
	svc := harness.Start()
	var samples atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < *n; i++ {
		p := &Poller{sensor: i, every: time.Duration(500+i*7) * time.Millisecond, samples: &samples}
		go p.Run(ctx)
	}
	svc.Every(func(int) { samples.Load() })
	svc.Serve()
}
