//go:build linux

package reactor

import (
	"sync"
	"testing"
)

// TestTakeOutBufferPeak: the peak is the most the output buffers held
// since the last take, however briefly; a take starts the next period at
// what they hold then; writers racing a take lose no high.
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

	// Concurrent writers each build to a high and drain; every take
	// reports at least what is held, and the takes together see the
	// highest high: one writer alone reaches 1000.
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
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				d := int64(1 + (w*200+i)%1000)
				if w == 0 && i == 100 {
					d = 1000
				}
				ln.addOutBuf(d)
				ln.addOutBuf(-d)
			}
		})
	}
	wg.Wait()
	close(stop)
	if top := <-seen; top < 1000 {
		t.Fatalf("the takes saw a peak of %d; a writer reached at least 1000", top)
	}
}
