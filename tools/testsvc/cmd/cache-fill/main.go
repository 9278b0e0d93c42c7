// cache-fill (negative): a bounded cache (-max-mb) warmed up at startup, then
// kept at its size by FIFO eviction while misses keep replacing entries. The
// heap grows once and stops.
package main

import (
	"flag"
	"fmt"
	"sync"

	"edgetrace/testsvc/internal/harness"
)

type Cache struct {
	mu    sync.Mutex
	max   int
	size  int
	items map[string][]byte
	order []string
}

func (c *Cache) Get(key string, load func() []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.items[key]; ok {
		return v
	}
	v := load()
	for c.size+len(v) > c.max && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		c.size -= len(c.items[old])
		delete(c.items, old)
	}
	c.items[key] = v
	c.order = append(c.order, key)
	c.size += len(v)
	return v
}

func main() {
	maxMB := flag.Int("max-mb", 16, "cache capacity, MiB")
	valKB := flag.Int("value-kb", 32, "value size, KiB")
	svc := harness.Start()
	c := &Cache{max: *maxMB << 20, items: map[string][]byte{}}
	load := func() []byte { return make([]byte, *valKB<<10) }
	keys := 2 * (*maxMB << 10) / *valKB // twice what fits: a steady miss rate
	for i := 0; i < keys/2; i++ {       // warm-up: the hot half
		c.Get(fmt.Sprintf("k%d", i), load)
	}
	svc.Every(func(seq int) { c.Get(fmt.Sprintf("k%d", (seq*7)%keys), load) })
	svc.Serve()
}
