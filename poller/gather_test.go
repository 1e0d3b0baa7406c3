//go:build linux

package poller_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
)

// forEachPlain runs fn per config, but the gathering row: these tests ask
// for Gather themselves.
func forEachPlain(t *testing.T, fn func(t *testing.T, h *harness, uring bool)) {
	for _, c := range configs {
		if c.gather {
			continue
		}
		t.Run(c.name, func(t *testing.T) { fn(t, newHarness(t, c.opts), c.opts.Backend == poller.Uring) })
	}
}

// TestGather: a look that Gather asked for waits, while it hands queued
// requests over, for the batch or the window, whichever comes first, and
// returns what came; the look after it does not wait. A look with an Event
// in hand, with nothing to hand over, or after a wake-up was taken does
// not wait. Epoll's Gather does nothing: its looks return at once.
func TestGather(t *testing.T) {
	const long = 10 * time.Second // no row may wait this out
	forEachPlain(t, func(t *testing.T, h *harness, uring bool) {
		// The runtime's preemption signal ends a gathering wait early, as
		// it ends every held one (TestHeldWait): blocked on the owner's
		// thread, only the batch or the window ends it.
		defer blockSIGURG(t)()
		look := func() (int, time.Duration) {
			start := time.Now()
			n := h.poll(0)
			return n, time.Since(start)
		}

		// The batch is there as the arms are handed over: no waiting.
		a, b := h.pair()
		c, d := h.pair()
		h.write(b)
		h.write(d)
		h.arm(h.tag(), a, poller.In)
		h.arm(h.tag(), c, poller.In)
		h.p.Gather(2, long)
		if n, took := look(); n != 2 || took > long/2 {
			t.Fatalf("a gathering look with its batch of 2 ready returned %d Events after %v", n, took)
		}

		// Fewer than the batch: what came, once the window is over.
		e, f := h.pair()
		h.write(f)
		h.arm(h.tag(), e, poller.In)
		// Two more arms that nothing makes ready but a watchdog, which
		// completes the batch should the window not end the wait.
		x, xp := h.pair()
		y, yp := h.pair()
		h.arm(h.tag(), x, poller.In)
		h.arm(h.tag(), y, poller.In)
		watchdog := time.AfterFunc(long/2, func() { h.write(xp); h.write(yp) })
		h.p.Gather(3, 20*time.Millisecond)
		n, took := look()
		if !watchdog.Stop() || n != 1 {
			t.Fatalf("a gathering look with 1 of 3 ready returned %d Events after %v", n, took)
		}
		if uring && took < 20*time.Millisecond {
			t.Errorf("a gathering look with 1 of 3 ready returned after %v, before its window", took)
		}

		// Gather is for one Wait: the look after the gathering one hands
		// its arm over and returns at once, with nothing. (a and c are
		// still readable: nothing read their bytes.)
		h.arm(h.tag(), a, poller.In)
		h.arm(h.tag(), c, poller.In)
		h.p.Gather(2, long)
		if n, took := look(); n != 2 || took > long/2 {
			t.Fatalf("a gathering look with its batch of 2 ready returned %d Events after %v", n, took)
		}
		g, _ := h.pair()
		h.arm(h.tag(), g, poller.In)
		if n, took := look(); n != 0 || took > long/2 {
			t.Fatalf("the look after a gathering one returned %d Events after %v", n, took)
		}

		// An Event in hand ends the look without waiting for a batch: one
		// of two ready arms does not fit a Wait of one Event, and the
		// look after it, which hands a third arm over (never ready),
		// returns it at once.
		buf := h.buf
		h.buf = h.buf[:1]
		h.arm(h.tag(), a, poller.In)
		h.arm(h.tag(), c, poller.In)
		for h.poll(0) == 0 {
		}
		h.arm(h.tag(), g, poller.In)
		h.p.Gather(3, long)
		if n, took := look(); n != 1 || took > long/2 {
			t.Fatalf("a gathering look with an Event in hand returned %d Events after %v", n, took)
		}
		h.buf = buf

		// Nor does a look with nothing to hand over wait (a ring that
		// cannot flag deferred work enters on every look, to run it).
		h.p.Gather(2, long)
		if n, took := look(); n != 0 || took > long/2 {
			t.Fatalf("a gathering look with nothing to hand over returned %d Events after %v", n, took)
		}

		// A Wake sent and not yet taken ends the look without waiting for
		// a batch (the owner has a command to run), though its completion
		// is still the kernel's deferred work when the look begins.
		h.p.Wake()
		to := h.tag()
		h.arm(to, g, poller.Out) // writable: comes at once
		for w := h.p.Stats().Wakes; h.p.Stats().Wakes == w; {
			h.p.Gather(3, long)
			if _, took := look(); took > long/2 {
				t.Fatalf("a gathering look after a Wake waited %v for its batch", took)
			}
		}
		h.await(to)
		h.quiet()
	})
}

// TestGatherEntersOnce: a gathering look is one system call, however much
// the kernel has ready (deferred work it posts some at a time, 20 an enter
// on 6.13+ kernels): the rest is the next look's, and no Event is lost or
// doubled on the way (the harness counts them). A look that entered again
// for the rest made two or three enters of every busy turn.
func TestGatherEntersOnce(t *testing.T) {
	forEachPlain(t, func(t *testing.T, h *harness, uring bool) {
		defer blockSIGURG(t)()
		const k = 48
		peers := make([]int, k)
		tags := make([]uint64, k)
		for i := range k {
			var fd int
			fd, peers[i] = h.pair()
			tags[i] = h.tag()
			h.arm(tags[i], fd, poller.In)
		}
		h.quiet() // handed over, none ready: each is armed in the kernel
		for _, fd := range peers {
			h.write(fd) // each poll fires: deferred work on DEFER_TASKRUN rings
		}
		idle, _ := h.pair()
		h.arm(h.tag(), idle, poller.In) // something to hand over
		before := h.p.Stats().Syscalls
		h.p.Gather(2, 10*time.Second)
		n := h.poll(0)
		if got := h.p.Stats().Syscalls - before; uring && got != 1 {
			t.Fatalf("a gathering look made %d system calls (%d Events), want 1", got, n)
		}
		if uring && n < 2 {
			t.Fatalf("a gathering look with %d ready returned %d Events", k, n)
		}
		for _, tag := range tags {
			h.await(tag)
		}
	})
}

// blockSIGURG blocks the runtime's preemption signal on the calling
// thread (the harness's owner is locked to it) until the returned func.
func blockSIGURG(t *testing.T) func() {
	t.Helper()
	var set, old unix.Sigset_t
	urg := uint(unix.SIGURG) - 1
	set.Val[urg/64] |= 1 << (urg % 64)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, &old); err != nil {
		t.Fatal(err)
	}
	return func() { unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil) }
}
