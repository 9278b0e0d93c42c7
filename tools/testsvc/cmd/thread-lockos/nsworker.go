package main

import (
	"runtime"
	"sync/atomic"
)

type command struct {
	op  string
	arg string
}

// NamespaceAgent runs per-tenant commands on a goroutine pinned to its OS
// thread (it would carry setns state). A tenant that goes away never closes
// its command channel and the goroutine never unlocks the thread, so each
// departed tenant keeps an OS thread parked.
type NamespaceAgent struct {
	handled atomic.Int64
}

func (a *NamespaceAgent) serveTenant(cmds <-chan command) {
	runtime.LockOSThread()
	for c := range cmds { // LEAK-SITE
		if c.op != "" {
			a.handled.Add(1)
		}
	}
	runtime.UnlockOSThread()
}

// Attach starts a tenant's worker and sends its first command.
func (a *NamespaceAgent) Attach(tenant string) chan<- command {
	cmds := make(chan command, 1)
	go a.serveTenant(cmds)
	cmds <- command{op: "configure", arg: tenant}
	return cmds
}
