package main

import "sync"

// Metric is one sample pushed by a device.
type Metric struct {
	Name  string
	Value float64
}

// Pipeline aggregates metric batches into running totals.
type Pipeline struct {
	mu     sync.Mutex
	totals map[string]float64
}

func NewPipeline() *Pipeline {
	return &Pipeline{totals: make(map[string]float64)}
}

// Ingest hands a batch to a fresh aggregator goroutine. The batch end is never
// signalled (no close(in)), so the aggregator's range loop never ends.
func (p *Pipeline) Ingest(batch []Metric) {
	in := make(chan Metric, 16)
	go p.aggregate(in)
	for _, m := range batch {
		in <- m
	}
}

func (p *Pipeline) aggregate(in <-chan Metric) {
	local := make(map[string]float64)
	for m := range in { // LEAK-SITE
		local[m.Name] += m.Value
		if len(local) >= 4 {
			p.merge(local)
			local = make(map[string]float64)
		}
	}
	p.merge(local)
}

func (p *Pipeline) merge(local map[string]float64) {
	p.mu.Lock()
	for k, v := range local {
		p.totals[k] += v
	}
	p.mu.Unlock()
}
