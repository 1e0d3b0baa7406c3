//go:build linux

package main

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// releaser hands memory back to the kernel once a burst of pending output
// has drained. Go returns freed heap to the kernel only after a garbage
// collection has found it free, and an idle daemon allocates too little to
// start one: a hostile-client run saw RSS stay at 337 MB for 108 s after 200
// never-reading peers left. Every tick ends a period and reads the most
// memory the listeners' Conns held for pending output during it
// (TakeOutBufferPeak, which also catches a burst that built and drained
// between two ticks: sampling ListenerStats.OutBuffer missed those); once
// a period's peak fell by releaseMin or more below the largest since the
// last release, it collects and releases at once (debug.FreeOSMemory).
// Periods, not instants, are compared: output buffers that swing by
// releaseMin within a period under steady bulk load would otherwise look
// like a drained burst at nearly every tick.
type releaser struct {
	peaks []func() int64 // constant: each listener's TakeOutBufferPeak
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	peak  int64         // owned by run (due): the largest period peak since the last release
	count atomic.Uint64 // releases made
}

const (
	// releaseEvery is how soon after a burst drained its memory goes back
	// (the burst itself is never missed: TakeOutBufferPeak). A tick reads
	// a few atomics.
	releaseEvery = 250 * time.Millisecond
	releaseMin   = 16 << 20
)

func startReleaser(peaks []func() int64) *releaser {
	r := &releaser{peaks: peaks, stop: make(chan struct{}), done: make(chan struct{})}
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
		var peak int64
		for _, f := range r.peaks {
			peak += f()
		}
		if r.due(peak) {
			// Twice: the reactor recycles output chunks through a
			// sync.Pool, which keeps what it holds across one collection.
			debug.FreeOSMemory()
			debug.FreeOSMemory()
			r.count.Add(1)
		}
	}
}

// due reports whether the period that just ended, whose peak was peak,
// calls for a release: its peak is releaseMin or more below the largest
// since the last release. It starts the next comparison from there.
func (r *releaser) due(peak int64) bool {
	if r.peak-peak >= releaseMin {
		r.peak = peak
		return true
	}
	r.peak = max(r.peak, peak)
	return false
}

// close stops the releaser and waits for its goroutine. Idempotent.
func (r *releaser) close() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}
