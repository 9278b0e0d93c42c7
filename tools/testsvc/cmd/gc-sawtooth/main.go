// gc-sawtooth (negative): a fixed working set (-base-mb) and -churn-kb of
// request garbage per event. HeapInuse saws between the live heap and the GC
// goal every few seconds; the live heap after each GC stays flat.
package main

import (
	"flag"

	"edgetrace/testsvc/internal/harness"
)

type table struct{ rows [][]byte }

func (t *table) render(seq, churn int) int {
	out := make([][]byte, 0, churn/4096+1)
	for n := 0; n < churn; n += 4096 {
		b := make([]byte, 4096)
		copy(b, t.rows[(seq+n)%len(t.rows)][:256])
		out = append(out, b)
	}
	return len(out)
}

func main() {
	baseMB := flag.Int("base-mb", 32, "working set, MiB")
	churnKB := flag.Int("churn-kb", 256, "garbage per event, KiB")
	svc := harness.Start()
	t := &table{}
	for n := 0; n < *baseMB<<20; n += 32 << 10 {
		t.rows = append(t.rows, make([]byte, 32<<10))
	}
	svc.Every(func(seq int) { t.render(seq, *churnKB<<10) })
	svc.Serve()
}
