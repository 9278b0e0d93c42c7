package main

import (
	"sync"
	"sync/atomic"
	"time"
)

// deviceConn is one long-lived device connection handler.
type deviceConn struct {
	id    int
	inbox chan string
}

// Registry holds every connected device; after the reconnect storm at
// startup the set is constant (devices never disconnect).
type Registry struct {
	mu      sync.Mutex
	devices []*deviceConn
	handled atomic.Int64
}

func (r *Registry) connect(id int) {
	d := &deviceConn{id: id, inbox: make(chan string)}
	r.mu.Lock()
	r.devices = append(r.devices, d)
	r.mu.Unlock()
	go r.handle(d)
}

func (r *Registry) handle(d *deviceConn) {
	for msg := range d.inbox {
		if msg != "" {
			r.handled.Add(1)
		}
	}
}

// ReconnectStorm connects n devices spread evenly over d.
func (r *Registry) ReconnectStorm(n int, d time.Duration) {
	step := d / time.Duration(n)
	for i := 0; i < n; i++ {
		r.connect(i)
		time.Sleep(step)
	}
}

// Send delivers a command to one device.
func (r *Registry) Send(seq int, msg string) {
	r.mu.Lock()
	if len(r.devices) == 0 {
		r.mu.Unlock()
		return
	}
	d := r.devices[seq%len(r.devices)]
	r.mu.Unlock()
	d.inbox <- msg
}
