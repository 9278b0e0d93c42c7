// heap-churn-leak: a slow heap leak under heavy churn. A service keeps a large
// working set (-base-mb), allocates -churn-kb of short-lived garbage per event
// (request decoding and rendering), and its audit log keeps -leak-bytes per
// event for ever. The garbage makes the GC run every few seconds and HeapInuse
// saw between the live heap and twice that; the live heap after GC creeps up
// by under 1% of what is allocated. At the defaults (-rate 20) the live heap
// goes from 64 to about 74 MB in 2 minutes with a GC every ~6 s.
package main

import (
	"flag"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	baseMB := flag.Int("base-mb", 64, "working set held from startup, MiB")
	churnKB := flag.Int("churn-kb", 512, "short-lived garbage per event, KiB")
	leakBytes := flag.Int("leak-bytes", 4096, "bytes the audit log keeps per event")
	svc := harness.Start()
	idx := NewIndex(*baseMB << 20)
	audit := &AuditLog{}
	svc.Every(func(seq int) {
		n := idx.Handle(seq, *churnKB<<10)
		audit.Record(seq, n, *leakBytes)
	})
	svc.Serve()
}
