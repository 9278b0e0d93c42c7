package main

import (
	"hash/crc32"
	"sync/atomic"
)

type job struct {
	id      int
	payload []byte
}

// Pool is a fixed set of workers on one job channel; most are idle most of
// the time, but all of them do get work.
type Pool struct {
	jobs chan job
	done atomic.Int64
	sum  atomic.Uint32
}

func NewPool(workers int) *Pool {
	p := &Pool{jobs: make(chan job)}
	for i := 0; i < workers; i++ {
		go p.work()
	}
	return p
}

func (p *Pool) work() {
	for j := range p.jobs {
		p.sum.Add(crc32.ChecksumIEEE(j.payload))
		p.done.Add(1)
	}
}

func (p *Pool) Submit(j job) { p.jobs <- j }
