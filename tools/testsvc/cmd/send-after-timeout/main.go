// send-after-timeout: a resolver whose query goroutine sends its answer on an
// unbuffered channel after the caller already gave up (timeout).
package main

import (
	"context"
	"fmt"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	svc := harness.Start()
	r := &Resolver{timeout: 20e6, slowEvery: 4}
	svc.Every(func(seq int) {
		// each event is one incoming request resolving a backend name
		go r.Lookup(context.Background(), fmt.Sprintf("svc-%d.cluster.local", seq%64))
	})
	svc.Serve()
}
