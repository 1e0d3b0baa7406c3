package cancel_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/cancel"
)

// TestTableConcurrentAcquireRelease: goroutines acquire and release slots as
// fast as they can while the table grows from one chunk. A slot handed to
// two holders at once (an ABA on the free list, a lost push during growth)
// trips the per-slot holder flag; a lost slot shows in the final count.
func TestTableConcurrentAcquireRelease(t *testing.T) {
	const goroutines = 4
	iters := 20_000
	if testing.Short() {
		iters = 2_000
	}
	tb := cancel.NewTable[payload](1)
	var holders [1 << 12]atomic.Int32 // by slot index; the table stays far smaller
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []handle
			for i := range iters {
				// Hold up to g+1 slots at a time, so the goroutines need
				// different amounts and the free list churns in odd orders.
				if len(held) <= g && i%3 != 2 {
					h, err := tb.Acquire()
					if err != nil {
						t.Error(err)
						return
					}
					if !holders[h.Index()].CompareAndSwap(0, 1) {
						t.Errorf("slot %d handed out while held", h.Index())
						return
					}
					h.Data().fd = g
					held = append(held, h)
					continue
				}
				if len(held) == 0 {
					continue
				}
				h := held[0]
				held = held[1:]
				if h.Data().fd != g {
					t.Errorf("slot %d's payload overwritten while held", h.Index())
					return
				}
				// A whole life from this goroutine: transitions are CASes, so
				// any goroutine may make them.
				h.Arm()
				if h.Wake(cancel.Ready) != cancel.MustDeliver || h.Delivered() != cancel.MustRelease {
					t.Errorf("slot %d: lifecycle went wrong: %v", h.Index(), h.State())
					return
				}
				holders[h.Index()].Store(0)
				tb.Release(h)
			}
			for _, h := range held {
				h.Close()
				h.Arm()
				h.Delivered()
				holders[h.Index()].Store(0)
				tb.Release(h)
			}
		}()
	}
	wg.Wait()
	// Every slot is free again: acquiring Cap() slots must not grow the
	// table, and must hand out each index once.
	c := tb.Cap()
	seen := map[int]bool{}
	for range c {
		h, err := tb.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		if seen[h.Index()] {
			t.Fatalf("index %d handed out twice", h.Index())
		}
		seen[h.Index()] = true
	}
	if tb.Cap() != c {
		t.Errorf("table grew from %d to %d: a released slot was lost", c, tb.Cap())
	}
}

// TestTableGrowth: a table grows chunk by chunk as requests stay live, and
// handles from earlier chunks keep working after later growth.
func TestTableGrowth(t *testing.T) {
	tb := cancel.NewTable[payload](0)
	var hs []handle
	for i := range 1000 {
		h, err := tb.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		h.Data().fd = i
		hs = append(hs, h)
	}
	if tb.Cap() < 1000 {
		t.Fatalf("Cap = %d with 1000 live requests", tb.Cap())
	}
	for i, h := range hs {
		if got, ok := tb.Lookup(h.Tag()); !ok || got.Data().fd != i {
			t.Fatalf("request %d lost after growth", i)
		}
	}
}

// TestFreeListABA builds the ABA interleaving on purpose: a pop reads head
// X with next Y and stops; meanwhile X and Y are taken and X alone comes
// back, so the head names X again. The stopped pop's CAS must fail (the
// head's version moved) rather than install Y, which is held, as the head.
func TestFreeListABA(t *testing.T) {
	var calls atomic.Int32
	paused, resume := make(chan struct{}), make(chan struct{})
	tb := cancel.NewTableWithPopHook[payload](1, func() {
		if calls.Add(1) == 1 { // the first pop of a non-empty list: the goroutine's
			close(paused)
			<-resume
		}
	})
	// Put X and Y on the free list, X on top.
	x, _ := tb.Acquire()
	y, _ := tb.Acquire()
	for _, h := range []handle{y, x} {
		h.Close()
		h.Arm()
		h.Delivered()
		tb.Release(h)
	}
	got := make(chan handle)
	go func() {
		h, _ := tb.Acquire() // stops after reading head X, next Y
		got <- h
	}()
	select {
	case <-paused:
	case <-time.After(5 * time.Second):
		t.Fatal("the Acquire never reached its pop")
	}
	x2, _ := tb.Acquire() // X
	y2, _ := tb.Acquire() // Y, now held
	if x2.Index() != x.Index() || y2.Index() != y.Index() {
		t.Fatalf("setup: got slots %d, %d; want %d, %d", x2.Index(), y2.Index(), x.Index(), y.Index())
	}
	x2.Close()
	x2.Arm()
	x2.Delivered()
	tb.Release(x2) // head is X again
	close(resume)
	var a handle
	select {
	case a = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the stopped Acquire never returned")
	}
	if a.Index() != x.Index() {
		t.Fatalf("the stopped Acquire got slot %d, want %d (the only free one it saw)", a.Index(), x.Index())
	}
	b, _ := tb.Acquire()
	if b.Index() == y.Index() {
		t.Fatalf("slot %d handed out while held: the stale pop installed it as the head", y.Index())
	}
}

// TestNewTableCapacity: NewTable(n) has room for n requests before it first
// grows, in whole chunks of 256 and not one chunk more; n live requests
// then fit without growth and the next one grows the table by one chunk.
func TestNewTableCapacity(t *testing.T) {
	const chunk = 256
	for _, n := range []int{0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 1 << 16} {
		want := (n + chunk - 1) / chunk * chunk
		tb := cancel.NewTable[payload](n)
		if tb.Cap() != want {
			t.Fatalf("NewTable(%d).Cap() = %d, want %d", n, tb.Cap(), want)
		}
		if n > 2*chunk {
			continue // the bound above is the point; filling it is the small ones' job
		}
		for range want {
			if _, err := tb.Acquire(); err != nil {
				t.Fatal(err)
			}
		}
		if tb.Cap() != want {
			t.Fatalf("NewTable(%d) grew to %d before its %d slots were live", n, tb.Cap(), want)
		}
		if _, err := tb.Acquire(); err != nil {
			t.Fatal(err)
		}
		if tb.Cap() != want+chunk {
			t.Fatalf("NewTable(%d): Cap() = %d after one more Acquire, want %d", n, tb.Cap(), want+chunk)
		}
	}
}

// TestFreeListABABalanced is the ABA of TestFreeListABA with as many pushes
// as pops in between: a pop reads head X with next Y and stops; meanwhile X
// and Y are taken, Z is released and X comes back on top of Z. The head
// names X again and, were the version not moved the same way by every push
// and pop (a push undoing a pop's bump), it would be the very word the
// stopped pop read. Its CAS must still fail: it returns X, and Y, which is
// held, is never handed out.
func TestFreeListABABalanced(t *testing.T) {
	var calls atomic.Int32
	paused, resume := make(chan struct{}), make(chan struct{})
	tb := cancel.NewTableWithPopHook[payload](1, func() {
		if calls.Add(1) == 1 { // the first pop of a non-empty list: the goroutine's
			close(paused)
			<-resume
		}
	})
	release := func(h handle) {
		h.Close()
		h.Arm()
		h.Delivered()
		tb.Release(h)
	}
	x, _ := tb.Acquire()
	y, _ := tb.Acquire()
	z, _ := tb.Acquire() // held until the stopped pop has read X
	release(y)
	release(x) // free list: X, Y
	got := make(chan handle)
	go func() {
		h, _ := tb.Acquire() // stops after reading head X, next Y
		got <- h
	}()
	select {
	case <-paused:
	case <-time.After(5 * time.Second):
		t.Fatal("the Acquire never reached its pop")
	}
	x2, _ := tb.Acquire() // X
	y2, _ := tb.Acquire() // Y, now held
	if x2.Index() != x.Index() || y2.Index() != y.Index() {
		t.Fatalf("setup: got slots %d, %d; want %d, %d", x2.Index(), y2.Index(), x.Index(), y.Index())
	}
	release(z)
	release(x2) // free list: X, Z; two pops and two pushes since the read
	close(resume)
	var a handle
	select {
	case a = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the stopped Acquire never returned")
	}
	if a.Index() != x.Index() {
		t.Fatalf("the stopped Acquire got slot %d, want %d", a.Index(), x.Index())
	}
	var b handle
	if msg := panicMessage(func() { b, _ = tb.Acquire() }); msg != "" {
		t.Fatalf("the next Acquire found a held slot on the free list (the stale pop installed Y as the head): %s", msg)
	}
	if b.Index() != z.Index() {
		t.Fatalf("the next Acquire got slot %d, want %d (Z, the only free one); Y is %d", b.Index(), z.Index(), y.Index())
	}
}

// TestLiveFollowsTheSlotsLife: Live names a slot's current life while it
// is not Free, the same life Acquire handed out, and nothing once the slot
// is released; a later life of the slot is a new handle.
func TestLiveFollowsTheSlotsLife(t *testing.T) {
	tb := cancel.NewTable[payload](1)
	if _, ok := tb.Live(0); ok {
		t.Fatal("Live on a table that handed out nothing")
	}
	var tags []uint64
	for round := range 3 {
		h, err := tb.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		got, ok := tb.Live(uint32(h.Index()))
		if !ok || got != h {
			t.Fatalf("round %d: Live(%d) = %v, %v; want the acquired handle %v", round, h.Index(), got, ok, h)
		}
		tags = append(tags, h.Tag())
		h.Arm()
		if h.Wake(cancel.Ready) != cancel.MustDeliver || h.Delivered() != cancel.MustRelease {
			t.Fatalf("round %d: lifecycle went wrong: %v", round, h.State())
		}
		tb.Release(h)
		if got, ok := tb.Live(uint32(h.Index())); ok {
			t.Fatalf("round %d: Live(%d) after the release = %v", round, h.Index(), got)
		}
	}
	if tags[0] == tags[1] || tags[1] == tags[2] {
		t.Fatalf("the slot's lives share a tag: %#x", tags)
	}
	for _, i := range []uint32{uint32(tb.Cap()), 1 << 23} {
		if _, ok := tb.Live(i); ok {
			t.Fatalf("Live(%d) beyond the table (capacity %d)", i, tb.Cap())
		}
	}
}
