// worker-early-return: a parsing worker returns on the first bad row and its
// producer stays blocked sending the next row.
package main

import (
	"fmt"

	"edgetrace/testsvc/internal/harness"
)

func main() {
	svc := harness.Start()
	im := &Importer{}
	svc.Every(func(seq int) {
		rows := make([]string, 6)
		for i := range rows {
			rows[i] = fmt.Sprintf("%d,%d,device-%d", seq, i, seq%50)
		}
		if seq%5 == 0 { // every fifth file has a corrupt row in the middle
			rows[2] = "\x00garbage"
		}
		go im.Import(rows)
	})
	svc.Serve()
}
