package main

import (
	"os"
	"sync"
	"time"
)

// primitives nobody will ever release; goroutines park on them for ever.
type primitives struct {
	never    chan int // nobody sends
	full     chan int // nobody receives
	never2   chan string
	mu       sync.Mutex // held by main
	rw       sync.RWMutex
	condMu   sync.Mutex
	cond     *sync.Cond
	wg       sync.WaitGroup // Add(1) never matched
	ticker   *time.Ticker
	pipesMu  sync.Mutex
	pipes    []*os.File
	maxPipes int
}

const numKinds = 10

func newPrimitives(maxPipes int) *primitives {
	p := &primitives{
		never:    make(chan int),
		full:     make(chan int),
		never2:   make(chan string),
		ticker:   time.NewTicker(time.Hour),
		maxPipes: maxPipes,
	}
	p.cond = sync.NewCond(&p.condMu)
	p.mu.Lock()
	p.rw.Lock()
	p.wg.Add(1)
	return p
}

func (p *primitives) waitRecv() { <-p.never }
func (p *primitives) waitSend() { p.full <- 1 }
func (p *primitives) waitSelect() {
	select {
	case <-p.never:
	case <-p.never2:
	}
}
func (p *primitives) waitLock() { p.mu.Lock() }
func (p *primitives) waitCond() {
	p.condMu.Lock()
	for {
		p.cond.Wait()
	}
}
func (p *primitives) waitGroup() { p.wg.Wait() }
func (p *primitives) waitSleep() { time.Sleep(1000 * time.Hour) }
func (p *primitives) waitRLock() { p.rw.RLock() }
func (p *primitives) waitTicker() {
	for {
		select {
		case <-p.ticker.C:
		case <-p.never:
		}
	}
}

// waitRead parks in IO wait on a pipe (netpoller); pipes cost fds, so only
// the first maxPipes goroutines of this kind get one and the rest receive.
func (p *primitives) waitRead() {
	p.pipesMu.Lock()
	if len(p.pipes) >= p.maxPipes {
		p.pipesMu.Unlock()
		p.waitRecv()
		return
	}
	r, w, err := os.Pipe()
	if err != nil {
		p.pipesMu.Unlock()
		p.waitRecv()
		return
	}
	p.pipes = append(p.pipes, r, w)
	p.pipesMu.Unlock()
	var buf [1]byte
	r.Read(buf[:])
}

func (p *primitives) park(kind int) {
	switch kind {
	case 0:
		p.waitRecv()
	case 1:
		p.waitSend()
	case 2:
		p.waitSelect()
	case 3:
		p.waitLock()
	case 4:
		p.waitCond()
	case 5:
		p.waitGroup()
	case 6:
		p.waitSleep()
	case 7:
		p.waitRLock()
	case 8:
		p.waitTicker()
	default:
		p.waitRead()
	}
}

// descend adds depth frames before parking, so stacks are deep-ish and
// differ between sites.
func descend(p *primitives, depth, kind int) int {
	if depth == 0 {
		p.park(kind)
		return 0
	}
	return descend(p, depth-1, kind) + 1
}

// Five service layers; each calls into every park kind, giving
// 5*numKinds = 50 distinct blocked stacks.
func ingest(p *primitives, depth, kind int) { descend(p, depth, kind) }
func route(p *primitives, depth, kind int)  { descend(p, depth, kind) }
func store(p *primitives, depth, kind int)  { descend(p, depth, kind) }
func notify(p *primitives, depth, kind int) { descend(p, depth, kind) }
func audit(p *primitives, depth, kind int)  { descend(p, depth, kind) }

var layers = []func(*primitives, int, int){ingest, route, store, notify, audit}
