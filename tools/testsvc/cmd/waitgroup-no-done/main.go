// waitgroup-no-done: wg.Add without Done on an error path; flushers pile up
// in wg.Wait.
package main

import (
	"fmt"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	svc := harness.Start()
	b := &Batcher{failEvery: 20}
	svc.Every(func(seq int) {
		items := make([]string, 4)
		for i := range items {
			items[i] = fmt.Sprintf("event-%d-%d", seq, i)
		}
		go b.Flush(items)
	})
	svc.Serve()
}
