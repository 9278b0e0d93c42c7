// fanout-buffered (negative): the fixed NCast; many short-lived goroutines
// (up to 200 ms each) so the count is noisy but does not trend.
package main

import (
	"fmt"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	svc := harness.Start()
	s := &Search{replicas: []string{"replica-a", "replica-b", "replica-c"}}
	svc.Every(func(seq int) {
		go s.Query(fmt.Sprintf("q%d", seq))
	})
	svc.Serve()
}
