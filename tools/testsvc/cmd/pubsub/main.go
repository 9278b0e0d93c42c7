// pubsub (negative): -subs subscribers blocked on channel receive, all fed
// by a publisher at -rate.
package main

import (
	"flag"
	"fmt"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	n := flag.Int("subs", 200, "subscribers")
	svc := harness.Start()
	b := &Broker{}
	for i := 0; i < *n; i++ {
		b.Subscribe()
	}
	svc.Every(func(seq int) { b.Publish(fmt.Sprintf("event %d", seq)) })
	svc.Serve()
}
