//go:build linux

package reactor

import (
	"sync"
	"testing"
)

// TestTakeOutBufferPeak: the peak is the most the output buffers held
// since the last take, however briefly; a take starts the next period at
// what they hold then; writers racing takes lose no high.
func TestTakeOutBufferPeak(t *testing.T) {
	ln := &Listener{}
	for _, step := range []struct {
		add  []int64
		want int64
	}{
		{nil, 0},
		{[]int64{100, 50, -120}, 150}, // built to 150, drained to 30
		{nil, 30},                     // a new period starts at what is held
		{[]int64{10, -40}, 40},
		{nil, 0},
		{[]int64{1 << 20, -(1 << 20)}, 1 << 20}, // a burst between two takes
	} {
		for _, d := range step.add {
			ln.addOutBuf(d)
		}
		if got := ln.TakeOutBufferPeak(); got != step.want {
			t.Fatalf("after %v: TakeOutBufferPeak() = %d, want %d", step.add, got, step.want)
		}
	}

	// Concurrent writers build and drain at once: the highest value any
	// of them made is what the takes, together, report (a high lost to
	// the race between a writer's CAS and a take would show here).
	var wg sync.WaitGroup
	seen := make(chan int64, 1)
	stop := make(chan struct{})
	go func() {
		var top int64
		for {
			select {
			case <-stop:
				seen <- max(top, ln.TakeOutBufferPeak())
				return
			default:
				top = max(top, ln.TakeOutBufferPeak())
			}
		}
	}()
	highs := make([]int64, 4)
	for w := range highs {
		wg.Go(func() {
			for i := range 2000 {
				d := int64(1 + (w*7919+i*104729)%1000)
				highs[w] = max(highs[w], ln.addOutBuf(d))
				ln.addOutBuf(-d)
			}
		})
	}
	wg.Wait()
	close(stop)
	want := max(highs[0], highs[1], highs[2], highs[3])
	if top := <-seen; top != want {
		t.Fatalf("the takes saw a peak of %d; the writers made %d", top, want)
	}
}
