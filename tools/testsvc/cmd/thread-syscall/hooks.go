package main

import (
	"sync/atomic"
	"syscall"
)

// HookRunner waits for status bytes from hook processes over pipes. It reads
// with a raw blocking syscall.Read, and it never closes its own copy of the
// write end, so the read never sees EOF: each wait pins an OS thread in the
// kernel.
type HookRunner struct {
	started atomic.Int64
	fds     atomic.Int64
}

func (h *HookRunner) Run(name string) error {
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		return err
	}
	h.fds.Add(2)
	h.started.Add(1)
	go h.waitStatus(p[0])
	return nil
}

func (h *HookRunner) waitStatus(fd int) {
	var buf [1]byte
	syscall.Read(fd, buf[:]) // LEAK-SITE
	syscall.Close(fd)
}
