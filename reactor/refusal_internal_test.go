//go:build linux

package reactor

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/poller"
	"golang.org/x/sys/unix"
)

// TestRefusedArmSaysWhy: an arm the backend refuses is completed once,
// Failed, with the backend's error. The public calls check their
// arguments first, so the test submits below them, with an event bit the
// poller knows no use for (its ErrBadEvents). The loop keeps that error
// outside the slot (loop.refusal) for the one delivery that reads it.
func TestRefusedArmSaysWhy(t *testing.T) {
	for _, b := range []Backend{BackendEpoll, BackendUring} {
		t.Run(fmt.Sprint(b), func(t *testing.T) {
			r := oneLoopReactor(t, b)
			defer r.Close()
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			const unknown Events = 1 << 20
			if poller.ArmMask&uint32(unknown) != 0 {
				t.Fatalf("the poller arms %#x: pick another bit", unknown)
			}
			for round := range 3 { // the refusal of one must not leak into the next
				w := &waiter{ch: make(chan Result, 2)}
				if _, err := r.loops[0].submit(fd, In|unknown, w, 0); err != nil {
					t.Fatal(err)
				}
				if res := <-w.ch; !errors.Is(res.Err, poller.ErrBadEvents) {
					t.Fatalf("round %d: a refused arm completed with %+v, want poller.ErrBadEvents", round, res)
				}
				// And a plain one after it says nothing of the refusal.
				ok := &waiter{ch: make(chan Result, 2)}
				if _, err := r.loops[0].submit(fd, Out, ok, 0); err != nil {
					t.Fatal(err)
				}
				if res := <-ok.ch; res.Err != nil || res.Events&Out == 0 {
					t.Fatalf("round %d: the arm after a refusal: %+v, want Out", round, res)
				}
				deadline := time.Now().Add(5 * time.Second)
				for r.Stats().Outstanding != 0 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if len(w.ch)+len(ok.ch) != 0 {
					t.Fatalf("round %d: a request completed twice", round)
				}
			}
		})
	}
}
