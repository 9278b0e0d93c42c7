// worker-pool (negative): 200 idle-most-of-the-time workers on a job channel.
package main

import (
	"flag"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	workers := flag.Int("workers", 200, "pool size")
	svc := harness.Start()
	p := NewPool(*workers)
	svc.Every(func(seq int) {
		for i := 0; i < 4; i++ {
			p.Submit(job{id: seq*4 + i, payload: []byte("reading")})
		}
	})
	svc.Serve()
}
