// bigdump: parks -n goroutines over 50 distinct blocked stacks (10 wait
// states x 5 call paths, recursion depth 1..-maxdepth) so that
// /debug/pprof/goroutine?debug=2 is tens of MB. For parser benchmarks.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	n := flag.Int("n", 100000, "goroutines to park")
	maxDepth := flag.Int("maxdepth", 3, "maximum extra recursion frames per stack")
	svc := harness.Start()
	p := newPrimitives(64)
	sites := len(layers) * numKinds
	// Uneven weights (1..7) so a few sites dominate, as in real dumps.
	weights := make([]int, sites)
	total := 0
	for i := range weights {
		weights[i] = 1 + (i*5)%7
		total += weights[i]
	}
	spawned := 0
	for i := 0; i < sites; i++ {
		count := *n * weights[i] / total
		if i == sites-1 {
			count = *n - spawned
		}
		layer, kind := layers[i/numKinds], i%numKinds
		depth := 1 + (i*3)%*maxDepth
		for j := 0; j < count; j++ {
			go layer(p, depth, kind)
		}
		spawned += count
	}
	fmt.Fprintf(os.Stderr, "bigdump: %d goroutines over %d sites, NumGoroutine=%d\n", spawned, sites, runtime.NumGoroutine())
	svc.Serve()
}
