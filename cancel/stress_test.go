package cancel_test

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/cancel"
)

// stressReq is a request's record in the stress test, shared by goroutines.
type stressReq struct {
	delivered  atomic.Int32 // completions delivered: must end at exactly 1
	outcome    atomic.Int32 // the delivered outcome
	cancelTrue atomic.Int32 // Cancels that reported true
	cancelNo   atomic.Int32 // Cancels that reported false, not Stale
}

type stressData struct{ req *stressReq }

type stressHandle = cancel.Handle[stressData]

// stressLoop is the event loop of the stress test, with a fake kernel: it
// arms, fires armed tags at random (readiness, error or spurious), cancels in
// the kernel asynchronously (io_uring) or synchronously (epoll DEL, leaving
// harvested events to go stale), and delivers.
type stressLoop struct {
	tb      *cancel.Table[stressData]
	rng     *rand.Rand
	armed   []stressArm
	batch   []stressCQE // harvested, not yet processed
	live    *atomic.Int64
	slots   chan struct{} // in-flight bound; a token comes back on Release
	cancelQ chan stressHandle
	stale   int
}

type stressArm struct {
	h          stressHandle
	cancelling bool // io_uring: the kernel posts -ECANCELED next
}

type stressCQE struct {
	tag  uint64
	kind cancel.Outcome
}

func (l *stressLoop) act(t *testing.T, h stressHandle, a cancel.Action) {
	if a.Has(cancel.MustArm) {
		switch n := l.rng.IntN(16); {
		case n == 0:
			a |= l.steal(h, cancel.Failed) // the arm failed synchronously
		case n == 1:
			a |= l.steal(h, cancel.Ready) // ready at submit
		default:
			l.armed = append(l.armed, stressArm{h: h})
		}
	}
	if a.Has(cancel.MustRequeue) {
		l.act(t, h, h.Requeue())
	}
	if a.Has(cancel.MustCancelInKernel) {
		i := l.find(h.Tag())
		switch {
		case h.Tag()%2 == 1:
			// epoll: DEL at once. An event already harvested into the batch
			// stays there and must be found stale.
			if i >= 0 {
				l.armed = append(l.armed[:i], l.armed[i+1:]...)
			}
			l.act(t, h, h.Disarmed())
		case i >= 0: // io_uring: POLL_REMOVE, the -ECANCELED CQE comes later
			l.armed[i].cancelling = true
		default: // io_uring: the CQE was already posted; it pays the kernel
		}
	}
	if a.Has(cancel.MustDeliver) {
		r := h.Data().req
		r.outcome.Store(int32(h.State().Outcome()))
		r.delivered.Add(1)
		l.act(t, h, h.Delivered())
	}
	if a.Has(cancel.MustRelease) {
		l.tb.Release(h)
		l.live.Add(-1)
		<-l.slots
	}
}

func (l *stressLoop) steal(h stressHandle, o cancel.Outcome) cancel.Action {
	if l.find(h.Tag()) >= 0 {
		panic("steal of an armed request")
	}
	return h.Steal(o)
}

func (l *stressLoop) find(tag uint64) int {
	for i, a := range l.armed {
		if a.h.Tag() == tag {
			return i
		}
	}
	return -1
}

// kernel fires about half of the armed tags into the batch, then processes
// the batch: the order in which stale events, cancels and readiness meet is
// up to the other goroutines' timing.
func (l *stressLoop) kernel(t *testing.T) {
	kept := l.armed[:0]
	for _, a := range l.armed {
		switch {
		case a.cancelling:
			l.batch = append(l.batch, stressCQE{a.h.Tag(), cancel.Failed})
		case l.rng.IntN(2) == 0:
			kinds := [...]cancel.Outcome{cancel.Ready, cancel.Ready, cancel.Failed, cancel.Undecided}
			l.batch = append(l.batch, stressCQE{a.h.Tag(), kinds[l.rng.IntN(len(kinds))]})
		default:
			kept = append(kept, a)
		}
	}
	l.armed = kept
	if len(l.batch) > 0 && l.rng.IntN(4) == 0 {
		// A deadline timer on the loop fires for a request whose event is
		// already harvested: the loop cancels it itself, and on epoll the
		// harvested event must then be found stale.
		if h, ok := l.tb.Lookup(l.batch[l.rng.IntN(len(l.batch))].tag); ok {
			ok, a := h.Cancel()
			r := h.Data().req
			switch {
			case ok:
				r.cancelTrue.Add(1)
			case a != cancel.Stale:
				r.cancelNo.Add(1)
			}
			switch {
			case a != cancel.MustAskLoopToCancel:
			case l.rng.IntN(2) == 0:
				l.act(t, h, h.Withdraw())
			default: // withdrawn later: the harvested event may come first
				l.cancelQ <- h
			}
		}
	}
	for len(l.batch) > 0 {
		if l.rng.IntN(2) == 0 {
			// A cancel message between two harvested events: on epoll its
			// DEL leaves a harvested event behind, which must go stale.
			select {
			case h := <-l.cancelQ:
				l.act(t, h, h.Withdraw())
			default:
			}
		}
		c := l.batch[0]
		l.batch = l.batch[1:]
		h, ok := l.tb.Lookup(c.tag)
		if !ok {
			l.stale++
			continue
		}
		a := h.Wake(c.kind)
		if a == cancel.Stale {
			l.stale++
		}
		l.act(t, h, a)
	}
}

type handoffItem struct {
	h stressHandle
	r *stressReq // carried alongside: a canceller must not read Slot.Data
}

func cancelAndRecord(it handoffItem, cancelQ chan<- stressHandle) {
	ok, a := it.h.Cancel()
	switch {
	case ok:
		it.r.cancelTrue.Add(1)
	case a != cancel.Stale:
		it.r.cancelNo.Add(1)
	}
	if a == cancel.MustAskLoopToCancel {
		cancelQ <- it.h
	}
}

// TestStress runs submitters, cancellers, the loop and finally the closer
// as real goroutines for a bounded time and checks every request completed
// exactly once, with Cancel's report matching the outcome.
func TestStress(t *testing.T) {
	d := 1500 * time.Millisecond
	if testing.Short() {
		d = 200 * time.Millisecond
	}
	deadline := time.Now().Add(d)
	tb := cancel.NewTable[stressData](64)
	var live atomic.Int64
	submitQ := make(chan stressHandle, 1024)
	cancelQ := make(chan stressHandle, 1024)
	handoff := make(chan handoffItem, 256) // to the cancellers
	slots := make(chan struct{}, 512)
	closing := make(chan struct{})

	var mu sync.Mutex
	var all []*stressReq // guarded by mu

	var submitters, cancellers sync.WaitGroup
	for s := range 2 {
		submitters.Add(1)
		go func() {
			defer submitters.Done()
			rng := rand.New(rand.NewPCG(uint64(s), 1))
			for n := 0; n < 200_000 && time.Now().Before(deadline); n++ {
				slots <- struct{}{}
				h, err := tb.Acquire()
				if err != nil {
					t.Error(err)
					return
				}
				r := &stressReq{}
				h.Data().req = r
				live.Add(1)
				mu.Lock()
				all = append(all, r)
				mu.Unlock()
				submitQ <- h // publishes Data to the loop
				switch rng.IntN(4) {
				case 0: // cancel at once, racing the loop's Arm
					cancelAndRecord(handoffItem{h, r}, cancelQ)
				case 1, 2:
					handoff <- handoffItem{h, r}
				}
			}
		}()
	}
	for range 2 {
		cancellers.Add(1)
		go func() {
			defer cancellers.Done()
			for it := range handoff {
				cancelAndRecord(it, cancelQ)
				cancelAndRecord(it, cancelQ) // double cancel
			}
		}()
	}

	loopDone := make(chan int)
	go func() {
		l := &stressLoop{tb: tb, rng: rand.New(rand.NewPCG(7, 7)), live: &live, slots: slots, cancelQ: cancelQ}
		defer func() { loopDone <- l.stale }()
		for {
			closed := false
			select {
			case <-closing:
				closed = true
			default:
			}
			idle := len(l.armed) == 0 && len(submitQ) == 0 && len(cancelQ) == 0
			switch {
			case closed && idle && live.Load() == 0:
				return
			case closed && idle:
				t.Errorf("%d requests live with nothing left to complete them", live.Load())
				return
			case idle:
				select { // block until work or shutdown
				case h := <-submitQ:
					l.act(t, h, h.Arm())
				case h := <-cancelQ:
					l.act(t, h, h.Withdraw())
				case <-closing:
				}
				continue
			}
		drain:
			for range 64 {
				select {
				case h := <-submitQ:
					l.act(t, h, h.Arm())
				case h := <-cancelQ:
					l.act(t, h, h.Withdraw())
				default:
					break drain
				}
			}
			l.kernel(t)
		}
	}()

	submitters.Wait()
	close(handoff)
	// The closer: no new request can start now; close every live one while
	// the cancellers may still be cancelling.
	closed := 0
	tb.Range(func(h stressHandle, st cancel.State) bool {
		if h.Close() == cancel.MustAskLoopToCancel {
			cancelQ <- h
		}
		closed++
		return true
	})
	cancellers.Wait()
	close(closing)
	stale := <-loopDone

	mu.Lock()
	defer mu.Unlock()
	var byOutcome [5]int
	for i, r := range all {
		o := cancel.Outcome(r.outcome.Load())
		if n := r.delivered.Load(); n != 1 {
			t.Fatalf("request %d delivered %d times", i, n)
		}
		byOutcome[o]++
		if (o == cancel.Canceled) != (r.cancelTrue.Load() > 0) {
			t.Fatalf("request %d delivered %v; Cancel reported true %d times", i, o, r.cancelTrue.Load())
		}
		if o == cancel.Canceled && r.cancelNo.Load() > 0 {
			t.Fatalf("request %d delivered Canceled but a Cancel reported false", i)
		}
	}
	tb.Range(func(h stressHandle, st cancel.State) bool {
		t.Errorf("slot %d still live after the loop drained: %v", h.Index(), st)
		return true
	})
	t.Logf("%d requests: ready=%d failed=%d canceled=%d closed=%d; %d live at close; %d stale events ignored; table grew to %d slots",
		len(all), byOutcome[cancel.Ready], byOutcome[cancel.Failed], byOutcome[cancel.Canceled], byOutcome[cancel.Closed],
		closed, stale, tb.Cap())
	if byOutcome[cancel.Canceled] == 0 || byOutcome[cancel.Ready] == 0 || stale == 0 {
		t.Errorf("the run did not reach the collisions it is for")
	}
}
