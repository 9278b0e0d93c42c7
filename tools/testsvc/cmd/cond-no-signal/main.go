// cond-no-signal: a dispatcher forgets cond.Signal on its error path;
// requesters sleep in sync.Cond.Wait forever.
package main

import (
	"fmt"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	svc := harness.Start()
	c := NewConn(10)
	svc.Every(func(seq int) {
		go c.Do(fmt.Sprintf("GET /item/%d", seq))
	})
	svc.Serve()
}
