//go:build linux

package poller_test

import (
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
)

// TestHeldWait: a held Wait (Hold(true)), which sleeps through the raw
// system-call entry and keeps the owner's P, ends as an ordinary one does,
// at an Event or a Wake, and also at a signal to the owner's thread, with
// nothing (the runtime preempts by such a signal, so a held wait that went
// on sleeping would keep the P from it). Hold(false) gives ordinary waits
// back.
func TestHeldWait(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		h.p.Hold(true)

		a, b := h.pair()
		tag := h.tag()
		h.arm(tag, a, poller.In)
		h.poll(0)
		h.write(b)
		h.await(tag)

		go h.p.Wake()
		for w := h.p.Stats().Wakes; h.p.Stats().Wakes == w; {
			h.poll(5 * time.Second)
		}

		// SIGURG, the runtime's preemption signal, sent to the owner's
		// thread until a Wait without a timeout returns. The look first
		// hands the kernel what is queued (the wake-up's poll): an enter
		// that submits something returns its count whatever ends its
		// wait, and only one that submits nothing shows a signal.
		h.poll(0)
		tid := unix.Gettid() // the harness runs the owner on a locked thread
		var done atomic.Bool
		go func() {
			for !done.Load() {
				unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
				time.Sleep(time.Millisecond)
			}
		}()
		returned := make(chan int, 1)
		timer := time.AfterFunc(5*time.Second, func() {
			if len(returned) == 0 {
				h.p.Wake() // unblock the owner so the test can fail
			}
		})
		n := h.poll(-1)
		returned <- n
		done.Store(true)
		if !timer.Stop() {
			t.Fatal("a held Wait without a timeout went on sleeping through 5 s of signals")
		}
		if n != 0 {
			t.Fatalf("a held Wait ended by a signal returned %d Events", n)
		}

		h.p.Hold(false)
		c, d := h.pair()
		tag = h.tag()
		h.arm(tag, c, poller.In)
		h.poll(0)
		h.write(d)
		h.await(tag)
		h.quiet()
	})
}

// TestHeldWaitKeepsTheP: while a held Wait sleeps, the runtime does not
// count its goroutine as one in a system call (it kept its P); an ordinary
// Wait is counted. Sampled from another goroutine, which then ends the
// Wait with a Wake.
func TestHeldWaitKeepsTheP(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		h.poll(0) // the wake-up's poll goes to the kernel now, not with the wait
		inSyscall := func(held bool) bool {
			h.p.Hold(held)
			before := notInGo()
			seen := make(chan bool, 1)
			fin := make(chan struct{}) // the sampler's own Wake is over: it counts no more
			go func() {
				defer close(fin)
				more := false
				for range 20 {
					time.Sleep(time.Millisecond)
					more = more || notInGo() > before
				}
				seen <- more
				h.p.Wake()
			}()
			// A signal may end a held wait before the Wake: wait again,
			// so that every sample sees the owner in a Wait.
			for w := h.p.Stats().Wakes; h.p.Stats().Wakes == w; {
				h.poll(5 * time.Second)
			}
			<-fin
			return <-seen
		}
		if !inSyscall(false) {
			t.Skip("the runtime's count of goroutines in system calls did not show an ordinary Wait here")
		}
		if inSyscall(true) {
			t.Error("a held Wait was counted as a goroutine in a system call: it gave its P up")
		}
	})
}

// notInGo is the runtime's count of goroutines in a system call.
func notInGo() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines/not-in-go:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
