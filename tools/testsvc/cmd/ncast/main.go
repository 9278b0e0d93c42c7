// ncast: N senders, one receive (first replica wins, the rest leak).
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
