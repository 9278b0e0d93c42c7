package main

import (
	"fmt"
	"math/rand"
	"time"
)

type hit struct {
	replica string
	doc     string
}

// Search queries every replica and takes the first answer; the results
// channel has room for every reply, so the slower replicas finish and exit.
type Search struct {
	replicas []string
}

func (s *Search) ask(replica, q string) hit {
	time.Sleep(time.Duration(rand.Intn(200)) * time.Millisecond)
	return hit{replica: replica, doc: fmt.Sprintf("%s:%s", replica, q)}
}

func (s *Search) Query(q string) hit {
	results := make(chan hit, len(s.replicas))
	for _, r := range s.replicas {
		go func(r string) {
			results <- s.ask(r, q)
		}(r)
	}
	return <-results
}
