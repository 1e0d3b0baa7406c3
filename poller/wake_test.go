package poller_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
)

func TestWake(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		// From another goroutine while the owner blocks.
		start := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			<-start
			done <- h.p.Wake()
		}()
		close(start)
		// Wait may also return early without a Wake (a signal, the Go
		// runtime's preemption among them: see Poller.Wait), so the owner
		// loops on its own clock, as the reactor does, until the Wake is
		// counted.
		deadline := time.Now().Add(5 * time.Second)
		for h.p.Stats().Wakes == 0 {
			left := time.Until(deadline)
			if left <= 0 {
				t.Fatal("Wake did not end a Wait within 5s")
			}
			if n := h.poll(left); n != 0 {
				t.Fatalf("woken Wait returned %d events", n)
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("Wake: %v", err)
		}
		if w := h.p.Stats().Wakes; w != 1 {
			t.Fatalf("Stats.Wakes = %d, want 1", w)
		}

		// Wakes before a Wait coalesce into one.
		deadline = time.Now().Add(5 * time.Second)
		for range 100 {
			if err := h.p.Wake(); err != nil {
				t.Fatal(err)
			}
		}
		for h.p.Stats().Wakes == 1 {
			left := time.Until(deadline)
			if left <= 0 {
				t.Fatal("a pending Wake did not end a Wait within 5s")
			}
			if n := h.poll(left); n != 0 {
				t.Fatalf("woken Wait returned %d events", n)
			}
		}
		h.quiet()
		if w := h.p.Stats().Wakes; w != 2 {
			t.Fatalf("Stats.Wakes = %d, want 2", w)
		}

		// A wake and an Event in one turn: the Event is not lost.
		a, b := h.pair()
		tag := h.tag()
		h.arm(tag, a, poller.In)
		h.poll(0)
		h.write(b)
		if err := h.p.Wake(); err != nil {
			t.Fatal(err)
		}
		h.await(tag)
	})
}

// TestWakeRacingClose: Wake from many goroutines while the owner closes;
// each Wake returns nil or ErrClosed and never writes to a freed fd number
// (-race watches the rest).
func TestWakeRacingClose(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			p := openPoller(t, poller.Options{Backend: b})
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				wg.Go(func() {
					for range 200 {
						if err := p.Wake(); err != nil {
							if !errors.Is(err, poller.ErrClosed) {
								errs <- err
							}
							return
						}
					}
				})
			}
			buf := make([]poller.Event, 4)
			if _, err := p.Wait(buf, 0); err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("Wake: %v", err)
			}
		})
	}
}

// TestManyArmed arms 10,000 eventfds at once, cancels a quarter before they
// become ready and fires the rest: every tag gets exactly one Event. On
// io_uring this overflows both the submission queue (flushed early) and the
// completion queue (the kernel's overflow list).
func TestManyArmed(t *testing.T) {
	const n = 10000
	raiseNofile(t, n+1024)
	forEach(t, func(t *testing.T, h *harness) {
		h.buf = make([]poller.Event, 512)
		fds := make([]int, n)
		for i := range fds {
			fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
			if err != nil {
				t.Fatalf("eventfd %d: %v", i, err)
			}
			fds[i] = fd
			h.open[fd] = true
		}
		tags := make([]uint64, n)
		for i, fd := range fds {
			tags[i] = h.tag()
			h.arm(tags[i], fd, poller.In)
		}
		h.quiet()
		if st := h.p.Stats(); st.Armed != n {
			t.Fatalf("Stats.Armed = %d, want %d", st.Armed, n)
		}
		for i := 0; i < n; i += 4 {
			if !h.p.Disarm(tags[i]) {
				t.Fatalf("Disarm(%d) = false", i)
			}
		}
		for i := 0; i < n; i += 4 {
			h.await(tags[i]) // canceled before the fd is ready
		}
		var one [8]byte
		one[0] = 1
		for _, fd := range fds {
			if _, err := unix.Write(fd, one[:]); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(h.armed) > 0 && time.Now().Before(deadline) {
			h.poll(time.Second)
		}
		if len(h.armed) > 0 {
			t.Fatalf("%d tags without an Event", len(h.armed))
		}
		for i, tag := range tags {
			ev := h.seen[tag]
			if want := i%4 != 0; want != (ev.Events == poller.In) || !want != ev.Canceled {
				t.Fatalf("tag %d: %v", i, ev)
			}
		}
		st := h.p.Stats()
		t.Logf("%s: %d syscalls for %d arms, %d disarms, %d events", h.p.Backend(), st.Syscalls, st.Arms, st.Disarms, st.Events)
	})
}

// TestWakeNeverSwallowed: two goroutines hand work to the owner and Wake it,
// round after round, so Wakes land while the owner is acknowledging earlier
// ones. A Wake lost to the coalescing flag leaves the owner asleep with work
// handed over: the test fails when a Wait sleeps out its whole (long)
// timeout while a producer waits for its work to be seen.
func TestWakeNeverSwallowed(t *testing.T) {
	const producers, rounds = 2, 3000
	const patience = 2 * time.Second
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			p := openPoller(t, poller.Options{Backend: b})
			var want [producers]atomic.Int64 // rounds handed over by producer i
			var done [producers]int64        // rounds the owner has seen; owner only
			acks := make([]chan struct{}, producers)
			var wg sync.WaitGroup
			for i := range producers {
				acks[i] = make(chan struct{}, 1)
				wg.Go(func() {
					for r := range rounds {
						want[i].Store(int64(r + 1))
						if err := p.Wake(); err != nil {
							t.Error(err)
							return
						}
						if _, ok := <-acks[i]; !ok {
							return
						}
					}
				})
			}
			defer func() {
				for _, c := range acks {
					close(c)
				}
				wg.Wait()
			}()
			buf := make([]poller.Event, 4)
			for finished := 0; finished < producers; {
				t0 := time.Now()
				if _, err := p.Wait(buf, patience); err != nil {
					t.Fatal(err)
				}
				slept := time.Since(t0) >= patience
				finished = 0
				for i := range producers {
					if w := want[i].Load(); w > done[i] {
						if slept {
							t.Fatalf("a Wake was swallowed: Wait slept %v with producer %d's round %d handed over", patience, i, w)
						}
						done[i] = w
						acks[i] <- struct{}{}
					}
					if done[i] == rounds {
						finished++
					}
				}
			}
		})
	}
}

// TestWakeBetweenWaits: a Wake made while the owner is between Waits ends
// the next Wait at once, even where that Wait finds the wake-up's
// completion already posted (a ring that flags its task work has the
// completion posted by the look Wait makes first). Such a Wait must not
// go on to sleep: the wake-up it consumed is then not armed again, and the
// Wake after it would be lost as well.
func TestWakeBetweenWaits(t *testing.T) {
	const patience = 5 * time.Second
	forEach(t, func(t *testing.T, h *harness) {
		h.poll(0) // the wake-up is armed in the kernel
		for round := range 3 {
			if err := h.p.Wake(); err != nil {
				t.Fatal(err)
			}
			wakes := h.p.Stats().Wakes
			t0 := time.Now()
			if _, err := h.p.Wait(make([]poller.Event, 4), patience); err != nil {
				t.Fatal(err)
			}
			if slept := time.Since(t0); slept >= patience || h.p.Stats().Wakes == wakes {
				t.Fatalf("round %d: the Wait after a Wake slept %v (wake-ups counted %d, before %d)",
					round, slept.Round(time.Millisecond), h.p.Stats().Wakes, wakes)
			}
		}
	})
}

// raiseNofile makes sure this process may hold need descriptors, raising
// the soft limit (and the hard one where permitted), or skips.
func raiseNofile(t *testing.T, need uint64) {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	old := lim
	lim.Cur = need
	lim.Max = max(lim.Max, need)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("RLIMIT_NOFILE %d/%d is below %d and cannot be raised: %v", old.Cur, old.Max, need, err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
}

// TestSmallRing arms 200 ready fds in one turn on a 4-entry ring (8 CQEs):
// the SQ is flushed early 50 times and the completions overflow the CQ onto
// the kernel's list. Every tag still gets exactly one Event.
func TestSmallRing(t *testing.T) {
	const n = 200
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			opts := c.opts
			opts.Entries = 4
			h := newHarness(t, opts)
			h.p = c.wrap(h.p)
			h.buf = make([]poller.Event, 7)
			for range n {
				fd, err := unix.Eventfd(1, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC) // readable
				if err != nil {
					t.Fatal(err)
				}
				h.open[fd] = true
				h.arm(h.tag(), fd, poller.In)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(h.armed) > 0 && time.Now().Before(deadline) {
				h.poll(time.Second)
			}
			if len(h.armed) > 0 {
				t.Fatalf("%d tags without an Event", len(h.armed))
			}
			for tag, ev := range h.seen {
				if ev.Events != poller.In {
					t.Fatalf("tag %#x: %v", tag, ev)
				}
			}
		})
	}
}
