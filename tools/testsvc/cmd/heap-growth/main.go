// heap-growth: closed sessions are never evicted from a map; HeapInuse grows
// at about rate*buf-kb KiB/s with a flat goroutine count.
package main

import (
	"flag"
	"fmt"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	bufKB := flag.Int("buf-kb", 16, "per-session buffer size in KiB")
	svc := harness.Start()
	st := NewSessionStore(*bufKB << 10)
	svc.Every(func(seq int) {
		s := st.Open(seq, fmt.Sprintf("user%d", seq%1000))
		st.Close(s)
	})
	svc.Serve()
}
