package reactor_test

import (
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

func TestArmReadyOnce(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			a, p := pair(t)
			var calls atomic.Int32
			got := make(chan reactor.Result, 2)
			q, err := r.Arm(a, reactor.In, func(res reactor.Result) { calls.Add(1); got <- res })
			if err != nil {
				t.Fatal(err)
			}
			select {
			case res := <-got:
				t.Fatalf("completed before the peer wrote: %+v", res)
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := unix.Write(p, []byte("x")); err != nil {
				t.Fatal(err)
			}
			res := <-got
			if res.Err != nil || res.Events&reactor.In == 0 {
				t.Fatalf("result = %+v, want In", res)
			}
			if q.Cancel() {
				t.Fatal("Cancel after a ready completion returned true")
			}
			s := r.Stats()
			if s.CompletedReady != 1 || calls.Load() != 1 || s.Outstanding != 0 {
				t.Fatalf("calls=%d stats=%+v", calls.Load(), s)
			}
		})
	}
}

func TestArmCancel(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			a, _ := pair(t)
			got := make(chan reactor.Result, 2)
			q, err := r.Arm(a, reactor.In, func(res reactor.Result) { got <- res })
			if err != nil {
				t.Fatal(err)
			}
			if !q.Cancel() {
				t.Fatal("first Cancel of a pending request returned false")
			}
			if res := <-got; !errors.Is(res.Err, reactor.ErrCanceled) {
				t.Fatalf("result = %+v, want ErrCanceled", res)
			}
			for i := 0; i < 3; i++ {
				if !q.Cancel() {
					t.Fatal("repeated Cancel of a canceled request returned false")
				}
			}
		})
	}
}

func TestPoll(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			a, p := pair(t)
			ev, err := r.Poll(context.Background(), a, reactor.Out)
			if err != nil || ev&reactor.Out == 0 {
				t.Fatalf("Poll(Out) = %v, %v", ev, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			if _, err := r.Poll(ctx, a, reactor.In); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Poll with an ending context = %v, want DeadlineExceeded", err)
			}
			go unix.Write(p, []byte("x"))
			ev, err = r.Poll(context.Background(), a, reactor.In)
			if err != nil || ev&reactor.In == 0 {
				t.Fatalf("Poll(In) = %v, %v", ev, err)
			}
		})
	}
}

// TestWakeNeverLost: after bursts of hand-offs from other goroutines (each
// waking the loop only if it sleeps, and Arms completing at once so the loop
// keeps going back to sleep), a request made on the idle loop still
// completes. It checks the sleeping-flag protocol end to end; the
// coalescing race inside the wake primitive itself is TestWakeHammered's.
func TestWakeNeverLost(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			a, _ := pair(t)
			const producers = 3
			for round := 0; round < 5; round++ {
				stop := time.Now().Add(30 * time.Millisecond)
				done := make(chan struct{})
				for g := 0; g < producers; g++ {
					go func() {
						defer func() { done <- struct{}{} }()
						for i := 0; time.Now().Before(stop); i++ {
							// Out is ready at once: the loop wakes, completes
							// it and goes back to sleep, over and over.
							q, err := r.Arm(a, reactor.Out, func(reactor.Result) {})
							if err != nil {
								t.Error(err)
								return
							}
							if i%2 == 0 {
								q.Cancel()
							}
						}
					}()
				}
				for g := 0; g < producers; g++ {
					<-done
				}
				waitFor(t, 5*time.Second, "the burst to drain", func() bool { return r.Stats().Outstanding == 0 })
				got := make(chan reactor.Result, 1)
				if _, err := r.Arm(a, reactor.Out, func(res reactor.Result) { got <- res }); err != nil {
					t.Fatal(err)
				}
				select {
				case res := <-got:
					if res.Err != nil {
						t.Fatal(res.Err)
					}
				case <-time.After(3 * time.Second):
					t.Fatalf("round %d: an Arm on an idle loop never completed: a wake-up was lost", round)
				}
			}
		})
	}
}

// TestArmDeadline: a deadline is one more canceller. It completes the
// request with os.ErrDeadlineExceeded, after which Cancel reports false
// (the deadline decided, not Cancel); a request completed first leaves no
// timer behind.
func TestArmDeadline(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			a, _ := pair(t)
			got := make(chan reactor.Result, 1)
			start := time.Now()
			q, err := r.ArmDeadline(a, reactor.In, start.Add(30*time.Millisecond), func(res reactor.Result) { got <- res })
			if err != nil {
				t.Fatal(err)
			}
			res := <-got
			if !errors.Is(res.Err, os.ErrDeadlineExceeded) {
				t.Fatalf("result %+v, want ErrDeadlineExceeded", res)
			}
			if d := time.Since(start); d < 30*time.Millisecond {
				t.Fatalf("deadline fired after %v, before it was due", d)
			}
			if q.Cancel() {
				t.Fatal("Cancel after the deadline decided returned true")
			}
			// 1,000 requests with far deadlines, all canceled: the heap
			// must empty with them.
			qs := make([]*reactor.Request, 1000)
			for i := range qs {
				if qs[i], err = r.ArmDeadline(a, reactor.In, time.Now().Add(time.Hour), func(reactor.Result) {}); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 5*time.Second, "1000 deadlines on the heap", func() bool { return r.Stats().Timers == 1000 })
			for _, q := range qs {
				if !q.Cancel() {
					t.Fatal("Cancel of a pending request returned false")
				}
			}
			waitFor(t, 5*time.Second, "the heap emptied by completions", func() bool {
				s := r.Stats()
				return s.Outstanding == 0 && s.Timers == 0
			})
		})
	}
}

// TestArmErrors: invalid arguments are refused synchronously (no callback
// ever runs); an fd that is not open is accepted and completes exactly once
// with the kernel's EBADF (DESIGN §2.1: "an error (e.g. EBADF)").
func TestArmErrors(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			a, _ := pair(t)
			never := func(res reactor.Result) { t.Errorf("callback of a refused Arm ran: %+v", res) }
			for _, tc := range []struct {
				name string
				fd   int
				ev   reactor.Events
				cb   func(reactor.Result)
			}{
				{"negative fd", -1, reactor.In, never},
				{"fd beyond 32 bits", a + 1<<32, reactor.In, never}, // not a itself
				{"no events", a, 0, never},
				{"unknown events", a, 1 << 20, never},
				{"nil callback", a, reactor.In, nil},
			} {
				if q, err := r.Arm(tc.fd, tc.ev, tc.cb); err == nil || q != nil {
					t.Errorf("%s: Arm = %v, %v; want an error", tc.name, q, err)
				}
			}
			// CloseFd likewise, and closes nothing: a number beyond 32
			// bits once closed the descriptor of its low bits.
			for _, fd := range []int{-1, a + 1<<32} {
				if err := r.CloseFd(fd); err == nil {
					t.Errorf("CloseFd(%d) = nil; want an error", fd)
				}
			}
			if _, err := unix.FcntlInt(uintptr(a), unix.F_GETFD, 0); err != nil {
				t.Fatalf("fd %d after the refused CloseFds: %v", a, err)
			}
			// The lowest free number is not open: EBADF, once.
			bad := a
			for {
				if _, err := unix.FcntlInt(uintptr(bad), unix.F_GETFD, 0); err == unix.EBADF {
					break
				}
				bad++
			}
			var calls atomic.Int32
			got := make(chan reactor.Result, 2)
			if _, err := r.Arm(bad, reactor.In, func(res reactor.Result) { calls.Add(1); got <- res }); err != nil {
				t.Fatalf("Arm on a closed fd refused synchronously: %v", err)
			}
			if res := <-got; !errors.Is(res.Err, unix.EBADF) {
				t.Fatalf("Arm on a closed fd: %+v, want EBADF", res)
			}
			waitFor(t, time.Second, "the loop to settle", func() bool { return r.Stats().Outstanding == 0 })
			if calls.Load() != 1 {
				t.Fatalf("EBADF delivered %d times", calls.Load())
			}
		})
	}
}

// TestBlockingCallsFromACallback: Close, Poll, Listener.Close and Shutdown
// would wait for the loop they run on; from a callback they return ErrOnLoop
// instead of deadlocking, and CloseAsync works there.
func TestBlockingCallsFromACallback(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			ln, err := r.Listen("tcp", "127.0.0.1:0", &echo{}, reactor.ListenConfig{})
			if err != nil {
				t.Fatal(err)
			}
			a, _ := pair(t)
			errs := make(chan [4]error, 1)
			if _, err := r.Arm(a, reactor.Out, func(reactor.Result) {
				_, perr := r.Poll(context.Background(), a, reactor.In) // a's own loop: would never return
				errs <- [4]error{r.Close(), ln.Close(), ln.Shutdown(context.Background()), perr}
				ln.CloseAsync()
			}); err != nil {
				t.Fatal(err)
			}
			for i, err := range <-errs {
				if !errors.Is(err, reactor.ErrOnLoop) {
					t.Fatalf("call %d from a callback = %v, want ErrOnLoop", i, err)
				}
			}
			if err := ln.Close(); err != nil { // CloseAsync's close, waited for here
				t.Fatal(err)
			}
			if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
				t.Fatal("still accepting after CloseAsync")
			}
		})
	}
}

// TestArmRequestCancelFromItsCallback: a Request recycled through
// ArmRequest may be canceled from its own callback, which can run before
// ArmRequest returns. ArmRequest must not write the Request after handing
// it to the loop; -race catches such a write against the callback's read.
// Cancel there reports false: the request completed ready.
func TestArmRequestCancelFromItsCallback(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			a, _ := pair(t)
			var q reactor.Request
			canceled := make(chan bool, 1)
			for i := 0; i < 50; i++ {
				// Out is ready at once: the callback races ArmRequest's return.
				if err := r.ArmRequest(&q, a, reactor.Out, func(reactor.Result) { canceled <- q.Cancel() }); err != nil {
					t.Fatal(err)
				}
				if <-canceled {
					t.Fatalf("round %d: Cancel from the callback of a ready request returned true", i)
				}
			}
		})
	}
}

// TestArmFromCallbackReachesTheKernel: a request made from a callback is
// queued during the loop's turn (an SQE on io_uring); the loop must hand it
// to the kernel before it sleeps. Nothing else wakes the loop here, so a
// loop that sleeps with the request still queued never runs its callback.
// (A parked loop that served turns inside one netpoller read did, until it
// asked the poller whether work was queued.)
func TestArmFromCallbackReachesTheKernel(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			a, p := pair(t)
			c, _ := pair(t) // writable at once
			second := make(chan reactor.Result, 1)
			armErr := make(chan error, 1)
			if _, err := r.Arm(a, reactor.In, func(reactor.Result) {
				_, err := r.Arm(c, reactor.Out, func(res reactor.Result) { second <- res })
				armErr <- err
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := unix.Write(p, []byte("x")); err != nil {
				t.Fatal(err)
			}
			if err := <-armErr; err != nil {
				t.Fatalf("Arm from the callback: %v", err)
			}
			select {
			case res := <-second:
				if res.Err != nil || res.Events&reactor.Out == 0 {
					t.Fatalf("second request = %+v, want Out", res)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the request made from a callback never completed: the loop slept with it queued")
			}
		})
	}
}

// TestCancelFromCallbackCompletes: a Cancel made from a callback on the loop
// decides its request at once, but its slot stays owed to the backend until
// the poller's Canceled event comes back. On epoll that event is decided
// without the kernel, so nothing announces it on the poller's descriptor:
// the loop must take it before it sleeps, or the backend's count (and the
// slot) stays held until an unrelated wake-up.
func TestCancelFromCallbackCompletes(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			a, p := pair(t)
			c, _ := pair(t) // never readable
			canceled := make(chan reactor.Result, 1)
			q, err := r.Arm(c, reactor.In, func(res reactor.Result) { canceled <- res })
			if err != nil {
				t.Fatal(err)
			}
			won := make(chan bool, 1)
			if _, err := r.Arm(a, reactor.In, func(reactor.Result) { won <- q.Cancel() }); err != nil {
				t.Fatal(err)
			}
			if _, err := unix.Write(p, []byte("x")); err != nil {
				t.Fatal(err)
			}
			if !<-won {
				t.Fatal("Cancel from the callback of an armed, idle request returned false")
			}
			select {
			case res := <-canceled:
				if !errors.Is(res.Err, reactor.ErrCanceled) {
					t.Fatalf("canceled request = %+v, want ErrCanceled", res)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a request canceled from a callback never completed: the loop slept with its outcome decided")
			}
			waitFor(t, 5*time.Second, "the backend to give back the canceled poll", func() bool {
				return r.Stats().BackendArmed == 0
			})
		})
	}
}
