package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Gateway talks to a local backend over a pool of keep-alive connections
// that sit idle between bursts (net/http conn.serve and persistConn loops).
type Gateway struct {
	client  *http.Client
	backend string
	ok      atomic.Int64
}

func startBackend() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/state", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "{\"ok\":true}\n")
	})
	srv := &http.Server{Handler: mux, IdleTimeout: time.Hour}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), nil
}

func NewGateway(backend string, conns int) *Gateway {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Hour}
	return &Gateway{client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, backend: backend}
}

// Burst issues n concurrent requests, reusing the idle connections.
func (g *Gateway) Burst(n int) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := g.client.Get(g.backend + "/v1/state")
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			g.ok.Add(1)
		}()
	}
	wg.Wait()
}
