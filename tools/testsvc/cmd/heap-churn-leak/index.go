package main

import (
	"encoding/binary"
	"hash/crc32"
)

// Index is the service's working set: built once, read by every request.
type Index struct {
	shards [][]byte
}

const shardSize = 64 << 10

func NewIndex(size int) *Index {
	ix := &Index{}
	for n := 0; n < size; n += shardSize {
		b := make([]byte, shardSize)
		for i := 0; i < len(b); i += 4096 {
			b[i] = byte(n + i)
		}
		ix.shards = append(ix.shards, b)
	}
	return ix
}

// Handle decodes and renders one request: everything it allocates is garbage
// once it returns (heavy churn), in pieces of varied sizes as real decoding
// produces them.
func (ix *Index) Handle(seq, churn int) int {
	sum := uint32(0)
	var keep [][]byte
	for left, k := churn, 0; left > 0; k++ {
		sz := 512 << (k % 6) // 512 B .. 16 KiB
		if sz > left && left >= 64 {
			sz = left
		}
		b := make([]byte, sz)
		binary.LittleEndian.PutUint32(b, uint32(seq+k))
		s := ix.shards[(seq+k)%len(ix.shards)]
		copy(b[4:], s[:len(b)-4])
		sum += crc32.ChecksumIEEE(b[:64])
		keep = append(keep, b)
		left -= sz
	}
	return int(sum) + len(keep)
}
