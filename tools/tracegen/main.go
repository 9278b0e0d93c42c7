// Command tracegen runs goroutines with known lifecycles and records a Go execution trace of
// them, for edgetrace's trace parser tests and benchmark.
//
//	tracegen -o FILE [-window 1s] [-busy N]   write a trace of the scenario to FILE
//	tracegen -serve 127.0.0.1:0 [-busy N]     serve /debug/pprof/trace while the scenario runs
//
// Scenario (fixed counts, so tests can check them):
//   - before the trace starts: leakPre* goroutines blocked on a channel receive, a mutex,
//     a cond and a sleep; they are "blocked before the window".
//   - during the window: workers that end, and new leaks: 7 on chan receive, 5 on chan send,
//     4 on a mutex, 3 on a cond, 2 on a WaitGroup, 2 on select{}, 3 sleeping, 1 in a
//     blocking read(2) on a pipe (stays in a syscall), plus getpid syscalls.
//   - -busy N: N goroutines ping-pong on channels, contend on a mutex and spawn short-lived
//     goroutines for the whole window (a busy service, for a large trace).
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"runtime/trace"
	"sync"
	"syscall"
	"time"
)

var (
	stuckMu   sync.Mutex
	stuckCond = sync.NewCond(&sync.Mutex{})
	stuckWG   sync.WaitGroup
	never     = make(chan int)
	neverSend = make(chan int)
)

func leakRecv()   { <-never }
func leakSend()   { neverSend <- 1 }
func leakMutex()  { stuckMu.Lock() }
func leakCond()   { stuckCond.L.Lock(); stuckCond.Wait() }
func leakWG()     { stuckWG.Wait() }
func leakSelect() { select {} }
func leakSleep()  { time.Sleep(time.Hour) }

// leakSyscall blocks in read(2) on a pipe nobody writes: the goroutine stays in a syscall.
func leakSyscall(fd int) {
	var b [1]byte
	syscall.Read(fd, b[:])
}

func worker(n int, done chan<- int) {
	s := 0
	for i := 0; i < n; i++ {
		s += i
	}
	syscall.Getpid()
	done <- s
}

func preLeaks() {
	for i := 0; i < 3; i++ {
		go leakRecv()
	}
	go leakMutex()
	go leakCond()
	go leakSleep()
}

func windowScenario() {
	done := make(chan int)
	for i := 0; i < 20; i++ {
		go worker(1000*i, done)
	}
	for i := 0; i < 20; i++ {
		<-done
	}
	for i := 0; i < 7; i++ {
		go leakRecv()
	}
	for i := 0; i < 5; i++ {
		go leakSend()
	}
	for i := 0; i < 4; i++ {
		go leakMutex()
	}
	for i := 0; i < 3; i++ {
		go leakCond()
	}
	for i := 0; i < 2; i++ {
		go leakWG()
	}
	for i := 0; i < 2; i++ {
		go leakSelect()
	}
	for i := 0; i < 3; i++ {
		go leakSleep()
	}
	var p [2]int
	if err := syscall.Pipe(p[:]); err == nil {
		go leakSyscall(p[0])
	}
	for i := 0; i < 50; i++ {
		syscall.Getpid()
	}
}

// busy keeps n goroutines switching for the duration: channel ping-pong, a contended
// mutex, and short-lived goroutines.
func busy(n int, stop <-chan struct{}) {
	var mu sync.Mutex
	counter := 0
	for i := 0; i < n; i++ {
		a, b := make(chan int), make(chan int)
		go func() {
			for {
				select {
				case <-stop:
					return
				case v := <-a:
					b <- v + 1
				}
			}
		}()
		go func() {
			v := 0
			for {
				select {
				case <-stop:
					return
				case a <- v:
					v = <-b
				}
				mu.Lock()
				counter++
				mu.Unlock()
				if v%64 == 0 {
					d := make(chan struct{})
					go func() { runtime.Gosched(); close(d) }()
					<-d
				}
			}
		}()
	}
}

func main() {
	out := flag.String("o", "", "write an execution trace of the scenario to this file")
	window := flag.Duration("window", time.Second, "trace window")
	serve := flag.String("serve", "", "serve /debug/pprof on this address instead (prints the address)")
	nbusy := flag.Int("busy", 0, "goroutine pairs keeping the scheduler busy")
	flag.Parse()

	stuckMu.Lock()
	stuckWG.Add(1)
	preLeaks()
	stop := make(chan struct{})
	time.Sleep(20 * time.Millisecond)

	if *serve != "" {
		ln, err := net.Listen("tcp", *serve)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ln.Addr().String())
		go func() {
			for {
				windowScenario()
				time.Sleep(200 * time.Millisecond)
			}
		}()
		if *nbusy > 0 {
			busy(*nbusy, stop)
		}
		log.Fatal(http.Serve(ln, nil))
	}
	if *out == "" {
		log.Fatal("need -o FILE or -serve ADDR")
	}
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	if err := trace.Start(f); err != nil {
		log.Fatal(err)
	}
	if *nbusy > 0 {
		busy(*nbusy, stop)
	}
	time.Sleep(*window / 4)
	windowScenario()
	time.Sleep(*window * 3 / 4)
	trace.Stop()
	close(stop)
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}
