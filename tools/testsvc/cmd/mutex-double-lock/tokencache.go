package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

type token struct {
	value   string
	expires time.Time
}

// TokenCache hands out per-tenant auth tokens, refreshing expired ones.
type TokenCache struct {
	mu        sync.Mutex
	tokens    map[string]token
	ttl       time.Duration
	refreshes atomic.Int64
}

func NewTokenCache(tenants []string, ttl time.Duration) *TokenCache {
	c := &TokenCache{tokens: make(map[string]token), ttl: ttl}
	now := time.Now()
	for _, t := range tenants {
		c.tokens[t] = token{value: "tok-" + t, expires: now.Add(ttl)}
	}
	return c
}

// Token returns a valid token for tenant. Once a token has expired it calls
// refresh with c.mu held, and refresh locks c.mu again: that goroutine blocks
// forever holding the lock and every later request piles up here.
func (c *TokenCache) Token(tenant string) string {
	c.mu.Lock() // LEAK-SITE
	defer c.mu.Unlock()
	t, ok := c.tokens[tenant]
	if !ok || time.Now().After(t.expires) {
		t = c.refresh(tenant)
	}
	return t.value
}

func (c *TokenCache) refresh(tenant string) token {
	c.mu.Lock() // second Lock of c.mu by the same goroutine (count stays 1)
	defer c.mu.Unlock()
	n := c.refreshes.Add(1)
	t := token{value: fmt.Sprintf("tok-%s-%d", tenant, n), expires: time.Now().Add(c.ttl)}
	c.tokens[tenant] = t
	return t
}
