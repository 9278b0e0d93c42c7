// thread-lockos: goroutines call runtime.LockOSThread and then block forever;
// each one keeps an OS thread (Threads in /proc/PID/status grows).
package main

import (
	"fmt"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	svc := harness.Start()
	a := &NamespaceAgent{}
	svc.Every(func(seq int) {
		a.Attach(fmt.Sprintf("tenant-%d", seq))
	})
	svc.Serve()
}
