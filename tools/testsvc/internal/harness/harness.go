// Package harness is the small amount of wiring every test service shares:
// flag parsing, a loopback listener serving net/http/pprof, and a load
// generator that calls the service's own code at a configurable rate so tests
// can compress hours of production traffic into seconds.
//
// It deliberately uses nothing beyond the standard library and no language
// features newer than Go 1.21, because the corpus is built with every Go
// release from 1.21 on.
package harness

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/* on http.DefaultServeMux
	"os"
	"runtime"
	"time"
)

// Service is one running test service.
type Service struct {
	Addr string  // the bound loopback address, host:port
	Rate float64 // events per second for the load generator (0 disables it)

	ln     net.Listener
	client *http.Client
}

var (
	listenFlag = flag.String("listen", "127.0.0.1:0", "loopback address for the pprof/HTTP server (port 0 picks a free port)")
	rateFlag   = flag.Float64("rate", 20, "load events per second driving the service (0 = no load)")
)

// Start parses flags (programs declare their own flags before calling it),
// binds the listener and prints "listening HOST:PORT" as the first stdout
// line so a test that passed port 0 learns the port. HTTP is served once
// Serve is called, so handlers can be registered in between.
func Start() *Service {
	flag.Parse()
	ln, err := net.Listen("tcp", *listenFlag)
	if err != nil {
		fmt.Fprintf(os.Stderr, "listen %s: %v\n", *listenFlag, err)
		os.Exit(2)
	}
	s := &Service{
		Addr: ln.Addr().String(),
		Rate: *rateFlag,
		ln:   ln,
		// Keep-alive client for the load generator's own HTTP calls: one
		// connection per concurrent caller, reused, so it adds a constant
		// number of goroutines rather than growth.
		client: &http.Client{Timeout: 30 * time.Second},
	}
	fmt.Printf("listening %s\n", s.Addr)
	fmt.Fprintf(os.Stderr, "%s %s pid %d rate %g/s\n", os.Args[0], runtime.Version(), os.Getpid(), s.Rate)
	return s
}

// Serve serves http.DefaultServeMux (pprof plus the program's handlers)
// on the listener and never returns. The goroutineleak profile needs no
// extra registration: pprof.Index serves every profile runtime/pprof knows,
// and runtime/pprof knows goroutineleak on Go 1.27, and on Go 1.26 built
// with GOEXPERIMENT=goroutineleakprofile (see runtime/pprof/pprof.go,
// lockProfiles, in both releases).
func (s *Service) Serve() {
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second}
	err := srv.Serve(s.ln)
	fmt.Fprintf(os.Stderr, "serve: %v\n", err)
	os.Exit(1)
}

// Every runs fn from one background goroutine at s.Rate calls per second.
// Above ~200/s it catches up in batches on a 5 ms tick instead of waking
// once per event, so high test rates stay cheap on a small machine.
func (s *Service) Every(fn func(seq int)) {
	s.EveryRate(s.Rate, fn)
}

// EveryRate is Every with an explicit rate (for secondary activity that
// should not scale with -rate).
func (s *Service) EveryRate(rate float64, fn func(seq int)) {
	if rate <= 0 {
		return
	}
	go func() {
		interval := time.Duration(float64(time.Second) / rate)
		if interval < 5*time.Millisecond {
			interval = 5 * time.Millisecond
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		start := time.Now()
		done := 0
		for now := range t.C {
			due := int(now.Sub(start).Seconds() * rate)
			for done < due {
				fn(done)
				done++
			}
		}
	}()
}

// Get performs a GET on the service's own server, draining the body so the
// keep-alive connection is reused. It returns the status code (0 on error).
func (s *Service) Get(path string) int {
	resp, err := s.client.Get("http://" + s.Addr + path)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
