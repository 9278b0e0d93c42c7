// mutex-double-lock: a cache refresh re-locks a mutex its caller holds; after
// the first token expiry (-token-ttl) requests pile up on sync.Mutex.Lock.
package main

import (
	"flag"
	"sync/atomic"
	"time"

	"edgetrace/testsvc/internal/harness"
)

var served atomic.Int64

func handleRequest(c *TokenCache, tenant string) {
	if tok := c.Token(tenant); tok != "" {
		served.Add(1)
	}
}

func main() {
	ttl := flag.Duration("token-ttl", 5*time.Second, "token lifetime; the first refresh deadlocks")
	svc := harness.Start()
	tenants := []string{"acme", "globex", "initech"}
	c := NewTokenCache(tenants, *ttl)
	svc.Every(func(seq int) {
		go handleRequest(c, tenants[seq%len(tenants)])
	})
	svc.Serve()
}
