// batch-periodic (negative): every -period a batch job loads -batch-mb of
// records, aggregates them and drops them; requests at -rate in between.
// The heap jumps at each batch and returns to the same level after it.
package main

import (
	"flag"
	"time"

	"edgetrace/testsvc/internal/harness"
)

type record struct {
	key  int
	vals []int64
}

func runBatch(mb int) int64 {
	var recs []*record
	for n := 0; n < mb<<20; n += 8 << 10 {
		recs = append(recs, &record{key: n, vals: make([]int64, 1024)})
	}
	var sum int64
	for _, r := range recs {
		r.vals[0] = int64(r.key)
		sum += r.vals[0]
	}
	return sum
}

func main() {
	batchMB := flag.Int("batch-mb", 24, "records loaded per batch, MiB")
	period := flag.Duration("period", 4*time.Second, "batch period")
	svc := harness.Start()
	svc.EveryRate(1/period.Seconds(), func(int) { runBatch(*batchMB) })
	svc.Every(func(seq int) { _ = make([]byte, 16<<10) })
	svc.Serve()
}
