package main

import (
	"sync/atomic"
	"time"
)

type upload struct {
	name     string
	total    int
	sent     atomic.Int64
	finished atomic.Bool
}

// Uploader pushes objects to storage and logs progress periodically.
type Uploader struct {
	progressEvery time.Duration
	bytes         atomic.Int64
	reports       atomic.Int64
}

func (u *Uploader) Upload(name string, size int) {
	up := &upload{name: name, total: size}
	go u.reportProgress(up)
	u.transfer(up)
}

func (u *Uploader) transfer(up *upload) {
	for off := 0; off < up.total; off += 4096 {
		up.sent.Add(4096)
	}
	u.bytes.Add(int64(up.total))
	up.finished.Store(true)
}

// reportProgress never stops its ticker and never leaves the loop once the
// upload has finished.
func (u *Uploader) reportProgress(up *upload) {
	t := time.NewTicker(u.progressEvery)
	for range t.C { // LEAK-SITE
		if up.finished.Load() {
			continue
		}
		u.reports.Add(1)
	}
}
