// pool-churn (negative): encoders take 64 KiB buffers from a sync.Pool; bursts
// of concurrent requests grow the pool, and the GC empties it again (the
// victim cache drops unused buffers after two cycles).
package main

import (
	"flag"
	"sync"

	"edgetrace/testsvc/internal/harness"
)

var bufPool = sync.Pool{New: func() any { return make([]byte, 64<<10) }}

func encode(seq int) int {
	b := bufPool.Get().([]byte)
	for i := 0; i < len(b); i += 1024 {
		b[i] = byte(seq)
	}
	n := len(b)
	bufPool.Put(b) //nolint:staticcheck // a slice header: the buffer itself is reused
	return n
}

func main() {
	burst := flag.Int("burst", 64, "concurrent encoders every 50th event")
	svc := harness.Start()
	svc.Every(func(seq int) {
		if seq%50 != 0 {
			encode(seq)
			return
		}
		var wg sync.WaitGroup
		for i := 0; i < *burst; i++ {
			wg.Add(1)
			go func(i int) { defer wg.Done(); encode(seq + i) }(i)
		}
		wg.Wait()
	})
	svc.Serve()
}
