package main

import (
	"fmt"
	"math/rand"
	"time"
)

type hit struct {
	backend string
	doc     string
}

// Search queries every replica and takes the first answer.
type Search struct {
	replicas []string
}

func (s *Search) ask(replica, q string) hit {
	time.Sleep(time.Duration(rand.Intn(2000)) * time.Microsecond)
	return hit{backend: replica, doc: fmt.Sprintf("%s:%s", replica, q)}
}

// Query sends to N replicas and receives once: the N-1 slower replies block
// on the unbuffered results channel forever.
func (s *Search) Query(q string) hit {
	results := make(chan hit)
	for _, r := range s.replicas {
		go func(r string) {
			results <- s.ask(r, q) // LEAK-SITE
		}(r)
	}
	return <-results
}
