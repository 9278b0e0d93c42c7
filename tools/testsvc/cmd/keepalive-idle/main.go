// keepalive-idle (negative): a gateway holding -conns idle keep-alive
// connections to an in-process backend, reused by periodic bursts.
package main

import (
	"flag"
	"fmt"
	"os"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	conns := flag.Int("conns", 40, "keep-alive connections held open")
	svc := harness.Start()
	backend, err := startBackend()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	g := NewGateway(backend, *conns)
	g.Burst(*conns) // open the pool up front
	// a full burst once a second whatever -rate is, plus single requests at -rate
	svc.EveryRate(1, func(int) { g.Burst(*conns) })
	svc.Every(func(int) { g.Burst(1) })
	svc.Serve()
}
