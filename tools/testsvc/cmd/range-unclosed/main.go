// range-unclosed: an aggregator ranges over a channel its producer never closes.
package main

import (
	"fmt"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	svc := harness.Start()
	p := NewPipeline()
	svc.Every(func(seq int) {
		batch := make([]Metric, 0, 8)
		for i := 0; i < 8; i++ {
			batch = append(batch, Metric{Name: fmt.Sprintf("sensor.%d", i), Value: float64(seq)})
		}
		p.Ingest(batch)
	})
	svc.Serve()
}
