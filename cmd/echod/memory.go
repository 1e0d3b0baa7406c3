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
// listeners' Conns hold for pending output (ListenerStats.OutBuffer) and
// the most they held since the tick before (TakeOutBufferPeak: a burst
// that built and drained between two ticks, or while this goroutine waited
// for a P behind busy loops, counts too); once the memory held fell by
// releaseMin or more from the largest value since the last release, it
// collects and releases at once (debug.FreeOSMemory).
type releaser struct {
	streams []*reactor.Listener // constant
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	peak    int64         // owned by run
	count   atomic.Uint64 // releases made
}

const (
	// releaseEvery is how soon after a burst drained its memory goes back
	// (the peak itself is never missed: TakeOutBufferPeak). A tick reads a
	// few atomics.
	releaseEvery = 250 * time.Millisecond
	releaseMin   = 16 << 20
)

func startReleaser(streams []*reactor.Listener) *releaser {
	r := &releaser{streams: streams, stop: make(chan struct{}), done: make(chan struct{})}
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
		// The sum of the listeners' peaks may exceed what they held
		// together at any one time: that errs towards releasing.
		var held, peak int64
		for _, ln := range r.streams {
			held += ln.Stats().OutBuffer
			peak += ln.TakeOutBufferPeak()
		}
		r.peak = max(r.peak, peak, held)
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
