// http-dead-peer: an http.Client without a timeout polling a peer that
// accepts and never answers. Each event costs two file descriptors.
package main

import (
	"fmt"
	"os"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	svc := harness.Start()
	peer, err := startStalledPeer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	f := NewFetcher()
	url := "http://" + peer.ln.Addr().String() + "/status"
	svc.Every(func(seq int) {
		go f.poll(url)
	})
	svc.Serve()
}
