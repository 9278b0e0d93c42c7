// thread-syscall: goroutines blocked in raw read(2) on pipes nobody writes
// or closes; each holds an OS thread and two fds.
package main

import (
	"fmt"
	"os"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	svc := harness.Start()
	h := &HookRunner{}
	svc.Every(func(seq int) {
		if err := h.Run(fmt.Sprintf("post-update-%d", seq)); err != nil {
			fmt.Fprintln(os.Stderr, "hook:", err)
		}
	})
	svc.Serve()
}
