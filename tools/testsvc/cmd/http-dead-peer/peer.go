package main

import (
	"net"
	"sync"
)

// stalledPeer stands in for a wedged upstream: it accepts TCP connections
// and never reads or answers, keeping them open.
type stalledPeer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startStalledPeer() (*stalledPeer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &stalledPeer{ln: ln}
	go p.accept()
	return p, nil
}

func (p *stalledPeer) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
	}
}
