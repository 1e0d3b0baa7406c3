package poller_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/oneshot-io/oneshot/poller"
)

// TestSyscallsPerTurn proves where the io_uring backend's speed comes from:
// a loop turn's arms reach the kernel with its wait in one io_uring_enter,
// where epoll pays one epoll_ctl per arm.
func TestSyscallsPerTurn(t *testing.T) {
	const k = 64
	forEach(t, func(t *testing.T, h *harness) {
		h.buf = make([]poller.Event, 2*k)
		h.poll(0) // settle the backend's own setup (the wake-up poll)
		peers := make([]int, k)
		before := h.p.Stats().Syscalls
		for i := range k {
			a, b := h.pair()
			peers[i] = b
			h.arm(h.tag(), a, poller.In)
		}
		// quiet's first Wait is the turn that hands the arms over; its
		// second makes one more syscall.
		h.quiet()
		armTurn := h.p.Stats().Syscalls - before - 1
		want := uint64(1)
		if h.p.Backend() == poller.Epoll {
			want = k + 1
		}
		if armTurn != want {
			t.Errorf("%d arms and one Wait took %d syscalls, want %d", k, armTurn, want)
		}

		before = h.p.Stats().Syscalls
		for _, b := range peers {
			h.write(b)
		}
		for len(h.armed) > 0 {
			h.poll(-1)
		}
		t.Logf("%d arms + Wait: %d syscalls; %d Events reaped with %d", k, armTurn, k, h.p.Stats().Syscalls-before)
	})
}

// TestUringWrongThread: a single-issuer ring used from another OS thread
// fails with ErrWrongThread instead of a bare EEXIST, and the owner carries
// on.
func TestUringWrongThread(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, sel, err := poller.Open(poller.Options{Backend: poller.Uring})
	if err != nil {
		if sel.UringErr != nil {
			t.Skipf("io_uring unavailable: %v", sel.UringErr)
		}
		t.Fatal(err)
	}
	defer p.Close()
	if !strings.Contains(sel.UringFlags, "SINGLE_ISSUER") {
		t.Skipf("ring set up without SINGLE_ISSUER (%s)", sel.UringFlags)
	}
	h := &harness{t: t, p: p, armed: map[uint64]bool{}, seen: map[uint64]poller.Event{},
		buf: make([]poller.Event, 4), open: map[int]bool{}, nextTag: 1}
	t.Cleanup(func() {
		for fd := range h.open {
			h.close(fd)
		}
	})
	a, _ := h.pair()
	tag := h.tag()
	h.arm(tag, a, poller.In)

	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // another thread: ours stays locked to us
		defer runtime.UnlockOSThread()
		_, err := p.Wait(make([]poller.Event, 4), 0)
		errc <- err
	}()
	if err := <-errc; !errors.Is(err, poller.ErrWrongThread) {
		t.Fatalf("Wait from another thread = %v, want ErrWrongThread", err)
	}
	h.quiet() // the owner's Wait submits what the stranger could not
	h.p.Disarm(tag)
	if ev := h.await(tag); !ev.Canceled {
		t.Fatalf("%v, want canceled", ev)
	}
}

// TestUringWrongThreadKeepsEvents: a Wait that has already taken an Event
// when its submit fails (here: a single-issuer ring entered from another
// thread) returns that Event with a nil error and reports the failure on the
// next Wait. Returning both would lose the Event for a caller that stops at
// the error, as the reactor's loop does: zero Events for an armed tag.
func TestUringWrongThreadKeepsEvents(t *testing.T) {
	h := newHarness(t, poller.Options{Backend: poller.Uring, Entries: 4})
	a, b := h.pair()
	h.write(b) // a is readable: its POLL_ADD completes as it is submitted
	ready := h.tag()
	h.arm(ready, a, poller.In)
	// Four more arms: the fifth SQE finds the 4-entry SQ full and flushes
	// it, so ready's CQE is posted now, on the owner's thread, unreaped.
	for range 4 {
		c, _ := h.pair()
		h.arm(h.tag(), c, poller.In)
	}

	type result struct {
		evs  []poller.Event
		err  error
		err2 error
	}
	resc := make(chan result)
	go func() {
		runtime.LockOSThread() // another thread: ours stays locked to us
		defer runtime.UnlockOSThread()
		buf := make([]poller.Event, 4)
		n, err := h.p.Wait(buf, 0)
		_, err2 := h.p.Wait(buf[n:], 0)
		resc <- result{buf[:n], err, err2}
	}()
	res := <-resc
	if res.err != nil || len(res.evs) != 1 || res.evs[0].Tag != ready {
		t.Fatalf("Wait from another thread = %v, %v; want the ready tag's Event and no error", res.evs, res.err)
	}
	h.record(res.evs[0])
	if res.err2 == nil {
		t.Skip("the ring is not single-issuer on this kernel: no thread is wrong")
	}
	if !errors.Is(res.err2, poller.ErrWrongThread) {
		t.Fatalf("second Wait from another thread = %v, want ErrWrongThread", res.err2)
	}
	h.quiet() // the owner's Wait submits what the stranger could not
}
