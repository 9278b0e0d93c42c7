package main

import (
	"io"
	"net/http"
	"sync/atomic"
)

// Fetcher polls a status URL. Its http.Client has no Timeout and the
// transport no ResponseHeaderTimeout, so a peer that accepts and never
// answers holds the poll (and its connection) forever.
type Fetcher struct {
	client *http.Client
	ok     atomic.Int64
	failed atomic.Int64
}

func NewFetcher() *Fetcher {
	return &Fetcher{client: &http.Client{}}
}

func (f *Fetcher) poll(url string) {
	resp, err := f.client.Get(url) // LEAK-SITE
	if err != nil {
		f.failed.Add(1)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	f.ok.Add(1)
}
