// rss-spike (negative): an import at startup holds -spike-mb for a moment and
// drops it. The Go runtime keeps the freed pages mapped (RSS stays high and
// the scavenger returns them slowly); afterwards a small steady load.
package main

import (
	"flag"
	"time"

	"edgetrace/testsvc/internal/harness"
)

func importAll(mb int) int {
	var chunks [][]byte
	for n := 0; n < mb<<20; n += 1 << 20 {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		chunks = append(chunks, b)
	}
	time.Sleep(500 * time.Millisecond)
	return len(chunks)
}

func main() {
	spikeMB := flag.Int("spike-mb", 200, "memory the startup import holds, MiB")
	svc := harness.Start()
	importAll(*spikeMB)
	svc.Every(func(seq int) { _ = make([]byte, 8<<10) })
	svc.Serve()
}
