package main

import (
	"sync/atomic"
	"time"
)

// maintenanceLoop runs a rarely scheduled job: it sleeps for hours at a time.
func maintenanceLoop(name string, every time.Duration, runs *atomic.Int64) {
	for {
		time.Sleep(every)
		runs.Add(1)
	}
}

// shortTask sleeps briefly, standing for a request that waits on a backoff.
func shortTask(d time.Duration, runs *atomic.Int64) {
	time.Sleep(d)
	runs.Add(1)
}
