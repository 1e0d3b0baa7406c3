//go:build linux

package main

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oneshot-io/oneshot/reactor"
)

// releaser hands memory back to the kernel once a burst of pending output
// has drained. Go returns freed heap to the kernel only after a garbage
// collection has found it free, and an idle daemon allocates too little to
// start one: a hostile-client run saw RSS stay at 337 MB for 108 s after 200
// never-reading peers left. Every tick it reads how much memory the
// listeners' Conns hold for pending output (ListenerStats.OutBuffer); once
// that fell by releaseMin or more from the largest value seen since the
// last release, it collects and releases at once (debug.FreeOSMemory).
type releaser struct {
	stats []func() reactor.ListenerStats // constant
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	peak  int64         // owned by run
	count atomic.Uint64 // releases made
}

const (
	// releaseEvery is short enough to see a burst that builds and drains
	// within a second or two (64 peers filling 1 MiB each take about one):
	// a peak no tick saw is a release not made. A tick reads a few atomics.
	releaseEvery = 250 * time.Millisecond
	releaseMin   = 16 << 20
)

func startReleaser(stats []func() reactor.ListenerStats) *releaser {
	r := &releaser{stats: stats, stop: make(chan struct{}), done: make(chan struct{})}
	go r.run()
	return r
}

func (r *releaser) run() {
	defer close(r.done)
	t := time.NewTicker(releaseEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		var held int64
		for _, f := range r.stats {
			held += f().OutBuffer
		}
		r.peak = max(r.peak, held)
		if r.peak-held >= releaseMin {
			// Twice: the reactor recycles output chunks through a
			// sync.Pool, which keeps what it holds across one collection.
			debug.FreeOSMemory()
			debug.FreeOSMemory()
			r.count.Add(1)
			r.peak = held
		}
	}
}

// close stops the releaser and waits for its goroutine. Idempotent.
func (r *releaser) close() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}
