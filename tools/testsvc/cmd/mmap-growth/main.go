// mmap-growth: anonymous mmaps that are evicted from the index but never
// unmapped; RSS grows by about rate*chunk-kb KiB/s outside the Go heap.
package main

import (
	"flag"
	"fmt"
	"os"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	chunkKB := flag.Int("chunk-kb", 64, "mapping size per event in KiB")
	svc := harness.Start()
	b := NewBlobCache(16)
	svc.Every(func(seq int) {
		if err := b.Put(seq, *chunkKB<<10); err != nil {
			fmt.Fprintln(os.Stderr, "mmap:", err)
		}
	})
	svc.Serve()
}
