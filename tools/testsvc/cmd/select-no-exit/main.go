// select-no-exit: per-session watcher goroutines select without a quit or
// ctx.Done() case and outlive their sessions.
package main

import (
	"fmt"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	svc := harness.Start()
	h := NewHub()
	var open []*Session
	svc.Every(func(seq int) {
		open = append(open, h.Open(seq))
		h.Publish(fmt.Sprintf("update %d", seq))
		if len(open) > 4 { // clients disconnect after a few updates
			h.Close(open[0])
			open = open[1:]
		}
	})
	svc.Serve()
}
