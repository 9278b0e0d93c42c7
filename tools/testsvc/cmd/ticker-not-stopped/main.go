// ticker-not-stopped: a progress reporter per upload loops on a ticker that
// is never stopped, after its upload finished.
package main

import (
	"flag"
	"fmt"
	"time"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	every := flag.Duration("progress-every", 10*time.Second, "progress ticker period")
	svc := harness.Start()
	u := &Uploader{progressEvery: *every}
	svc.Every(func(seq int) {
		u.Upload(fmt.Sprintf("logs/%06d.tar", seq), 64<<10)
	})
	svc.Serve()
}
