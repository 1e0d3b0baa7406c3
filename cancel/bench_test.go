package cancel_test

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/cancel"
)

// BenchmarkLifecycle: one request's whole life on the loop, uncontended:
// acquire → arm → the kernel's completion looked up by tag → deliver →
// release. Figures on a shared machine are noisy: compare the sub-benchmarks
// of one run (mutex-peer is the same life on a mutex-guarded table).
func BenchmarkLifecycle(b *testing.B) {
	b.Run("ready", func(b *testing.B) {
		tb := cancel.NewTable[payload](16)
		b.ReportAllocs()
		for b.Loop() {
			h, err := tb.Acquire()
			if err != nil {
				b.Fatal(err)
			}
			h.Data().fd = 3
			if h.Arm() != cancel.MustArm {
				b.Fatal("arm")
			}
			got, ok := tb.Lookup(h.Tag())
			if !ok || got.Wake(cancel.Ready) != cancel.MustDeliver || got.Delivered() != cancel.MustRelease {
				b.Fatal("wake")
			}
			tb.Release(got)
		}
		b.ReportMetric(5, "transitions/op")
	})
	b.Run("canceled", func(b *testing.B) {
		tb := cancel.NewTable[payload](16)
		b.ReportAllocs()
		for b.Loop() {
			h, _ := tb.Acquire()
			h.Arm()
			if ok, a := h.Cancel(); !ok || a != cancel.MustAskLoopToCancel {
				b.Fatal("cancel")
			}
			if h.Withdraw() != cancel.MustDeliver|cancel.MustCancelInKernel || h.Delivered() != cancel.NothingToDo {
				b.Fatal("withdraw")
			}
			got, _ := tb.Lookup(h.Tag())
			if got.Wake(cancel.Failed) != cancel.MustRelease {
				b.Fatal("final completion")
			}
			tb.Release(got)
		}
		b.ReportMetric(7, "transitions/op")
	})
	b.Run("mutex-peer", func(b *testing.B) {
		tb := newMutexTable(16)
		b.ReportAllocs()
		for b.Loop() {
			i, gen := tb.acquire()
			tb.arm(i, gen)
			tb.wake(tb.lookup(i, gen))
			if tb.delivered(i, gen) {
				tb.release(i, gen)
			}
		}
		b.ReportMetric(5, "transitions/op")
	})
}

// BenchmarkLifecycleVsMutex runs the ready lifecycle on cancel's table and
// on the mutex peer in alternating batches of 256, timing each batch, so
// that load from other processes falls on both alike; it reports each one's
// ns per lifecycle and their ratio (cancel/mutex; below 1 is faster).
func BenchmarkLifecycleVsMutex(b *testing.B) {
	tb := cancel.NewTable[payload](16)
	mt := newMutexTable(16)
	const batch = 256
	var ours, peer time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		for range batch {
			h, _ := tb.Acquire()
			h.Arm()
			got, _ := tb.Lookup(h.Tag())
			got.Wake(cancel.Ready)
			if got.Delivered() == cancel.MustRelease {
				tb.Release(got)
			}
		}
		mid := time.Now()
		for range batch {
			i, gen := mt.acquire()
			mt.arm(i, gen)
			mt.wake(mt.lookup(i, gen))
			if mt.delivered(i, gen) {
				mt.release(i, gen)
			}
		}
		ours += mid.Sub(start)
		peer += time.Since(mid)
	}
	n := float64(b.N * batch)
	b.ReportMetric(float64(ours.Nanoseconds())/n, "ns/lifecycle")
	b.ReportMetric(float64(peer.Nanoseconds())/n, "mutex-ns/lifecycle")
	b.ReportMetric(float64(ours)/float64(peer), "ratio")
}

// BenchmarkCancelRacingCompletion: the loop (the benchmark goroutine) and a
// canceller goroutine race on every request. The loop publishes the tag and
// arms; the canceller acknowledges the tag and calls Cancel at once, while
// the loop, seeing the acknowledgement, reports the kernel's completion
// (Wake): the two CASes meet on one cache line and either may win. Reports
// the share of requests the cancel won; compare ns/op with
// BenchmarkLifecycle/ready of the same run for the price of the contention
// (one cross-core hand-off per request is part of it).
//
// handoff-peer runs the same hand-off with a partner that acknowledges but
// never cancels: the difference between the two is the race itself.
func BenchmarkCancelRacingCompletion(b *testing.B) {
	if runtime.GOMAXPROCS(0) < 2 {
		b.Skip("needs two Ps for the canceller to race the loop")
	}
	b.Run("cancel", func(b *testing.B) { benchRace(b, true) })
	b.Run("handoff-peer", func(b *testing.B) { benchRace(b, false) })
}

func benchRace(b *testing.B, cancels bool) {
	tb := cancel.NewTable[payload](16)
	// published: loop → canceller, the tag to race on; acked: canceller →
	// loop, "I am about to Cancel it"; mailbox: canceller → loop, a
	// MustAskLoopToCancel to withdraw.
	// Each on its own cache line: the two goroutines spin on them.
	var lines struct {
		published atomic.Uint64
		_         [56]byte
		acked     atomic.Uint64
		_         [56]byte
		mailbox   atomic.Uint64
	}
	published, acked, mailbox := &lines.published, &lines.acked, &lines.mailbox
	var stop atomic.Bool
	var wonByCancel atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var last uint64
		for i := 0; !stop.Load(); i++ {
			tag := published.Load()
			if tag == last {
				yieldSometimes(i)
				continue
			}
			last = tag
			acked.Store(tag)
			h, ok := tb.Lookup(tag)
			if !ok || !cancels {
				continue
			}
			if won, a := h.Cancel(); won {
				wonByCancel.Add(1)
				if a == cancel.MustAskLoopToCancel {
					mailbox.Store(tag)
				}
			}
		}
	}()
	b.ReportAllocs()
	var canceled int64
	for b.Loop() {
		h, _ := tb.Acquire()
		published.Store(h.Tag())
		a := h.Arm()
		for i := 0; acked.Load() != h.Tag(); i++ {
			yieldSometimes(i)
		}
		if a == cancel.MustArm {
			a = h.Wake(cancel.Ready) // the kernel's completion
		}
		if a != cancel.MustDeliver {
			b.Fatalf("loop got %v", a)
		}
		if h.State().Outcome() == cancel.Canceled {
			canceled++
		}
		if h.Delivered() != cancel.MustRelease {
			b.Fatal("delivered")
		}
		// The canceller's message, if it sent one, names a request already
		// delivered: Withdraw must find nothing to do.
		for range 2 {
			if tag := mailbox.Swap(0); tag != 0 && h.Withdraw() != cancel.NothingToDo {
				b.Fatal("Withdraw found an undelivered request")
			}
		}
		tb.Release(h)
	}
	stop.Store(true)
	wg.Wait()
	if won := wonByCancel.Load(); won != canceled {
		b.Fatalf("Cancel reported true %d times, %d requests delivered Canceled", won, canceled)
	}
	b.ReportMetric(100*float64(canceled)/float64(b.N), "%canceled")
}

// yieldSometimes lets a benchmark's busy wait for its partner goroutine
// yield now and then, so that a partner descheduled on a shared machine
// does not cost a whole time slice.
func yieldSometimes(i int) {
	if i%128 == 127 {
		runtime.Gosched()
	}
}

// mutexTable is the peer: the same life on a table guarded by one mutex,
// as a reactor might write it without a state word.
type mutexTable struct {
	mu    sync.Mutex
	slots []mutexSlot // guarded by mu
	free  []int32     // guarded by mu
}

type mutexSlot struct {
	gen     uint32
	phase   cancel.Phase
	outcome cancel.Outcome
	owes    bool
}

func newMutexTable(n int) *mutexTable {
	t := &mutexTable{slots: make([]mutexSlot, n)}
	for i := n - 1; i >= 0; i-- {
		t.free = append(t.free, int32(i))
	}
	return t
}

func (t *mutexTable) acquire() (int32, uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	t.slots[i].phase = cancel.Submitted
	return i, t.slots[i].gen
}

func (t *mutexTable) arm(i int32, gen uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := &t.slots[i]; s.gen == gen && s.phase == cancel.Submitted {
		s.phase, s.owes = cancel.OnQueue, true
	}
}

func (t *mutexTable) lookup(i int32, gen uint32) (int32, uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return i, t.slots[i].gen
}

func (t *mutexTable) wake(i int32, gen uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := &t.slots[i]; s.gen == gen && s.phase == cancel.OnQueue {
		s.phase, s.outcome, s.owes = cancel.Completing, cancel.Ready, false
	}
}

func (t *mutexTable) delivered(i int32, gen uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.slots[i]
	s.phase = cancel.Done
	return !s.owes
}

func (t *mutexTable) release(i int32, gen uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.slots[i] = mutexSlot{gen: gen + 1}
	t.free = append(t.free, i)
}

// BenchmarkParallelLifecycle: every P runs whole lifecycles on one shared
// table at once, the contended case of many submitters; mutex-peer is the
// same on the mutex-guarded table. Compare the two within one run.
func BenchmarkParallelLifecycle(b *testing.B) {
	b.Run("cancel", func(b *testing.B) {
		tb := cancel.NewTable[payload](64)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				h, err := tb.Acquire()
				if err != nil {
					b.Error(err)
					return
				}
				h.Arm()
				h.Wake(cancel.Ready)
				if h.Delivered() == cancel.MustRelease {
					tb.Release(h)
				}
			}
		})
	})
	b.Run("mutex-peer", func(b *testing.B) {
		mt := newMutexTable(64)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i, gen := mt.acquire()
				mt.arm(i, gen)
				mt.wake(mt.lookup(i, gen))
				if mt.delivered(i, gen) {
					mt.release(i, gen)
				}
			}
		})
	})
}
