package main

import (
	"errors"
	"strings"
	"sync/atomic"
)

// Importer loads CSV-like rows through a parsing worker.
type Importer struct {
	imported atomic.Int64
	rejected atomic.Int64
}

var errBadRow = errors.New("import: malformed row")

func (im *Importer) parse(row string) error {
	if strings.Contains(row, "\x00") {
		return errBadRow
	}
	im.imported.Add(1)
	return nil
}

// worker stops at the first bad row, leaving Import blocked on its send.
func (im *Importer) worker(jobs <-chan string, errc chan<- error) {
	for r := range jobs {
		if err := im.parse(r); err != nil {
			im.rejected.Add(1)
			errc <- err
			return
		}
	}
	errc <- nil
}

// Import feeds rows to the worker over an unbuffered channel.
func (im *Importer) Import(rows []string) error {
	jobs := make(chan string)
	errc := make(chan error, 1)
	go im.worker(jobs, errc)
	for _, r := range rows {
		jobs <- r // LEAK-SITE
	}
	close(jobs)
	return <-errc
}
