package main

import (
	"fmt"
	"sync"
)

type product struct {
	sku   string
	name  string
	price int64
	tags  []string
}

// Catalog is rebuilt from scratch periodically; the previous generation
// becomes garbage, so the heap saws up and down around a flat level.
type Catalog struct {
	mu    sync.RWMutex
	items map[string]*product
	gen   int
}

func (c *Catalog) Rebuild(n int) {
	items := make(map[string]*product, n)
	for i := 0; i < n; i++ {
		sku := fmt.Sprintf("sku-%07d", i)
		items[sku] = &product{sku: sku, name: "product " + sku, price: int64(i), tags: []string{"a", "b"}}
	}
	c.mu.Lock()
	c.items = items
	c.gen++
	c.mu.Unlock()
}

// Lookup renders a product page; the temporary buffer is short-lived garbage.
func (c *Catalog) Lookup(sku string) int {
	buf := make([]byte, 0, 32<<10)
	c.mu.RLock()
	p := c.items[sku]
	c.mu.RUnlock()
	if p != nil {
		buf = append(buf, p.name...)
	}
	return len(buf)
}
