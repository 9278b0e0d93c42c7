// heap-breathing (negative): a catalog rebuilt every -rebuild; heap grows and
// is freed, with a flat goroutine count and a flat average HeapInuse.
package main

import (
	"flag"
	"fmt"
	"time"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	items := flag.Int("items", 100000, "products per catalog generation")
	rebuild := flag.Duration("rebuild", 3*time.Second, "rebuild period")
	svc := harness.Start()
	c := &Catalog{}
	c.Rebuild(*items)
	svc.EveryRate(1/rebuild.Seconds(), func(int) { c.Rebuild(*items) })
	svc.Every(func(seq int) { c.Lookup(fmt.Sprintf("sku-%07d", seq%*items)) })
	svc.Serve()
}
