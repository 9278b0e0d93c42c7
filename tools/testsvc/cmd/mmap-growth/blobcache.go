package main

import (
	"sync"
	"syscall"
)

// BlobCache keeps recently received firmware chunks in anonymous mappings
// outside the Go heap. Evict drops the index entry without munmap, so RSS
// grows while HeapSys stays flat.
type BlobCache struct {
	mu     sync.Mutex
	chunks map[int][]byte
	limit  int
}

func NewBlobCache(limit int) *BlobCache {
	return &BlobCache{chunks: make(map[int][]byte), limit: limit}
}

func (b *BlobCache) Put(key int, size int) error {
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE) // LEAK-SITE
	if err != nil {
		return err
	}
	for i := 0; i < len(mem); i += 4096 { // touch every page so it is resident
		mem[i] = byte(key)
	}
	b.mu.Lock()
	b.chunks[key] = mem
	if len(b.chunks) > b.limit {
		delete(b.chunks, key-b.limit)
	}
	b.mu.Unlock()
	return nil
}
