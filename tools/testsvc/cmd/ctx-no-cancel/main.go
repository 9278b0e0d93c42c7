// ctx-no-cancel: context.WithTimeout without calling cancel; a goroutine per
// call waits on ctx.Done() until the (long) deadline.
package main

import (
	"context"
	"flag"
	"time"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	timeout := flag.Duration("call-timeout", 10*time.Minute, "per-call deadline (the leak lasts this long)")
	svc := harness.Start()
	serverCtx, stop := context.WithCancel(context.Background())
	defer stop()
	c := NewRPCClient(serverCtx, *timeout)
	methods := []string{"Inventory.Get", "Orders.List", "Users.Lookup"}
	svc.Every(func(seq int) {
		c.Call(methods[seq%len(methods)])
	})
	svc.Serve()
}
