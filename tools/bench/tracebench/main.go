// Command ettracebench is the baseline of edgetrace's trace-parse bench: Go's own execution
// trace reader (internal/trace, the one `go tool trace` uses) reading every event of a trace
// file and doing nothing else with it, so the bench compares parsers, not text output.
//
//	ettracebench FILE     prints "events N" (every event ReadEvent returned) on stdout
//
// internal/trace can only be imported from inside GOROOT/src, so tools/bench/trace_bench.py
// copies this file into a scratch copy of the Go root (src/cmd/ettracebench) and builds it
// there; it is never built from this directory.
package main

import (
	"fmt"
	"io"
	"os"

	"internal/trace"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ettracebench FILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	// NewReader wraps f in its own bufio.Reader: no extra buffering here, as in cmd/trace.
	r, err := trace.NewReader(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ettracebench:", err)
		os.Exit(1)
	}
	n := 0
	for {
		_, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "ettracebench: after", n, "events:", err)
			os.Exit(1)
		}
		n++
	}
	fmt.Println("events", n)
}
