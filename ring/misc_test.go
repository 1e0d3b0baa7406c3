//go:build linux

package ring_test

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/ring"
)

// TestReapPartialBatch reaps fewer CQEs than are ready: the rest must stay
// ready, in order, for the next Reap.
func TestReapPartialBatch(t *testing.T) {
	r := newRing(t, ring.Config{Entries: 16})
	for i := uint64(0); i < 10; i++ {
		prep(t, r, func(s *ring.SQE) { s.PrepNop(i) })
	}
	if _, err := r.SubmitAndWait(10, time.Second); err != nil {
		t.Fatalf("SubmitAndWait: %v", err)
	}
	var buf [16]ring.CQE
	next := uint64(0)
	for _, take := range []int{3, 0, 4, 16} {
		n := r.Reap(buf[:take])
		want := min(take, 10-int(next))
		if n != want {
			t.Fatalf("Reap(%d) = %d, want %d", take, n, want)
		}
		for _, c := range buf[:n] {
			if c.UserData != next {
				t.Fatalf("reaped user_data %d, want %d", c.UserData, next)
			}
			next++
		}
		if got := r.CQReady(); got != uint32(10-next) {
			t.Fatalf("CQReady = %d after reaping %d, want %d", got, next, 10-next)
		}
	}
}

// TestTimedWaitNeedsMinComplete waits for two completions when only one
// can come: the wait must last the whole timeout, not end at the first.
func TestTimedWaitNeedsMinComplete(t *testing.T) {
	for _, force := range []bool{false, true} {
		r := newRing(t, ring.Config{Entries: 8})
		if force {
			ring.ForceTimeoutSQE(r)
		}
		a, _ := socketpair(t)
		prep(t, r, func(s *ring.SQE) { s.PrepPollAdd(int32(a), unix.POLLIN, 1) })
		prep(t, r, func(s *ring.SQE) { s.PrepNop(2) })
		const d = 30 * time.Millisecond
		start := time.Now()
		if _, err := r.SubmitAndWait(2, d); err != nil {
			t.Fatalf("SubmitAndWait: %v", err)
		}
		if el := time.Since(start); el < d {
			t.Fatalf("force=%v: returned after %v with one completion, before the %v timeout", force, el, d)
		}
		var buf [4]ring.CQE
		if n := r.Reap(buf[:]); n != 1 || buf[0].UserData != 2 {
			t.Fatalf("force=%v: reaped %+v, want the NOP alone", force, buf[:n])
		}
	}
}

// TestSingleIssuerOtherThread shows why SetupSingleIssuer callers must
// lock their thread: the kernel refuses a submit from another thread.
func TestSingleIssuerOtherThread(t *testing.T) {
	lockThread(t, ring.SetupSingleIssuer)
	if err := ring.Check(); err != nil {
		t.Skip(err)
	}
	r, err := ring.New(ring.Config{Entries: 4, Flags: ring.SetupSingleIssuer})
	if errors.Is(err, unix.EINVAL) {
		t.Skip("kernel lacks IORING_SETUP_SINGLE_ISSUER")
	}
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer r.Close()
	prep(t, r, func(s *ring.SQE) { s.PrepNop(1) })
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // a thread other than the locked creator's
		defer runtime.UnlockOSThread()
		_, err := r.Submit()
		done <- err
	}()
	if err := <-done; !errors.Is(err, unix.EEXIST) {
		t.Fatalf("Submit from another thread = %v, want EEXIST", err)
	}
	// The owner thread can still submit the queued NOP.
	if c := waitCQEs(t, r, 1)[0]; c.UserData != 1 {
		t.Fatalf("CQE = %+v", c)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{ring.SetupFlags(0).String(), "0"},
		{(ring.SetupSingleIssuer | ring.SetupDeferTaskrun).String(), "SINGLE_ISSUER|DEFER_TASKRUN"},
		{(ring.SetupClamp | 1<<30).String(), "CLAMP|0x40000000"},
		{ring.OpPollAdd.String(), "POLL_ADD"},
		{ring.Opcode(200).String(), "opcode(200)"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("String() = %q, want %q", tc.got, tc.want)
		}
	}
	if !(ring.FeatNoDrop | ring.FeatExtArg).Has(ring.FeatExtArg) || ring.FeatNoDrop.Has(ring.FeatNoDrop|ring.FeatExtArg) {
		t.Error("Features.Has must require every asked-for bit")
	}
	if err := (ring.CQE{Res: -int32(unix.ECANCELED)}).Err(); !errors.Is(err, unix.ECANCELED) {
		t.Errorf("CQE.Err = %v, want ECANCELED", err)
	}
	if err := (ring.CQE{Res: 1}).Err(); err != nil {
		t.Errorf("CQE.Err for Res 1 = %v, want nil", err)
	}
}

// TestSubmitStopsAtBadSQE queues NOP, an ASYNC_CANCEL with flags no kernel
// knows, NOP. The kernel fails the bad one with -EINVAL and, unless
// SetupSubmitAll, leaves the SQEs after it queued for the next Submit.
func TestSubmitStopsAtBadSQE(t *testing.T) {
	tests := []struct {
		name      string
		flags     ring.SetupFlags
		first     int // consumed by the first Submit
		leftAfter uint32
	}{
		{"default", 0, 2, 1},
		{"SubmitAll", ring.SetupSubmitAll, 3, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(t, ring.Config{Entries: 8, Flags: tc.flags})
			prep(t, r, func(s *ring.SQE) { s.PrepNop(1) })
			prep(t, r, func(s *ring.SQE) { s.PrepCancel(99, 1<<31, 2) })
			prep(t, r, func(s *ring.SQE) { s.PrepNop(3) })
			n, err := r.Submit()
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			if n != tc.first || r.SQReady() != tc.leftAfter {
				t.Fatalf("Submit consumed %d, SQReady %d; want %d and %d", n, r.SQReady(), tc.first, tc.leftAfter)
			}
			res := map[uint64]int32{}
			for _, c := range waitCQEs(t, r, 3) {
				res[c.UserData] = c.Res
			}
			if res[1] != 0 || res[2] != -int32(unix.EINVAL) || res[3] != 0 {
				t.Fatalf("results %v, want 1:0 2:-EINVAL 3:0", res)
			}
		})
	}
}

// TestSubmitAndWaitHeld: the held wait submits and waits as SubmitAndWait
// does: a NOP's completion ends it, its timeout ends it with nothing, and
// a timeout of 0 submits without waiting.
func TestSubmitAndWaitHeld(t *testing.T) {
	for _, force := range []bool{false, true} {
		r := newRing(t, ring.Config{Entries: 8})
		if force {
			ring.ForceTimeoutSQE(r) // no EXT_ARG: the ordinary timed wait
		}
		prep(t, r, func(s *ring.SQE) { s.PrepNop(7) })
		if n, err := r.SubmitAndWaitHeld(1, -1); err != nil || n != 1 {
			t.Fatalf("force=%v: SubmitAndWaitHeld(1, -1) with a NOP = %d, %v; want 1 submitted", force, n, err)
		}
		var buf [4]ring.CQE
		if n := r.Reap(buf[:]); n != 1 || buf[0].UserData != 7 {
			t.Fatalf("force=%v: reaped %+v, want the NOP", force, buf[:n])
		}

		a, _ := socketpair(t)
		prep(t, r, func(s *ring.SQE) { s.PrepPollAdd(int32(a), unix.POLLIN, 8) })
		if n, err := r.SubmitAndWaitHeld(1, 0); err != nil || n != 1 {
			t.Fatalf("force=%v: SubmitAndWaitHeld(1, 0) = %d, %v; want the poll submitted", force, n, err)
		}
		// A signal (the runtime's preemption) may end a held wait early:
		// wait again for what is left, as a caller would.
		const d = 30 * time.Millisecond
		for start := time.Now(); time.Since(start) < d; {
			left := d - time.Since(start)
			t0 := time.Now()
			if _, err := r.SubmitAndWaitHeld(1, left); err != nil {
				t.Fatalf("force=%v: SubmitAndWaitHeld(1, %v): %v", force, left, err)
			}
			if el := time.Since(t0); el > left+time.Second {
				t.Fatalf("force=%v: a held wait of %v returned after %v", force, left, el)
			}
		}
		if n := r.Reap(buf[:]); n != 0 {
			t.Fatalf("force=%v: reaped %+v, want nothing", force, buf[:n])
		}
	}
}

// TestSubmitAndWaitHeldTimesOut: with the runtime's preemption signal
// blocked on the waiting thread, only its timeout ends a held wait (where
// the runtime does not preempt by signal, that bound is all there is).
func TestSubmitAndWaitHeldTimesOut(t *testing.T) {
	r := newRing(t, ring.Config{Entries: 8})
	if !r.Features().Has(ring.FeatExtArg) {
		t.Skip("no IORING_FEAT_EXT_ARG: a timed held wait is an ordinary one here")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set, old unix.Sigset_t
	urg := uint(unix.SIGURG) - 1
	set.Val[urg/64] |= 1 << (urg % 64)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, &old); err != nil {
		t.Fatal(err)
	}
	defer unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	const d = 50 * time.Millisecond
	start := time.Now()
	if _, err := r.SubmitAndWaitHeld(1, d); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < d || el > d+2*time.Second {
		t.Fatalf("a held wait of %v with nothing to complete returned after %v", d, el)
	}
}

// TestReapPostedLeavesDeferredWork: on a DEFER_TASKRUN ring a poll that
// fires is task work until an enter runs it. ReapPosted takes only what
// is posted and never enters; Reap enters once to run the flagged work;
// and an enter that submits runs it too, after which ReapPosted finds the
// completion without entering again (the busy Wait of poller: one
// system call a turn).
func TestReapPostedLeavesDeferredWork(t *testing.T) {
	const flags = ring.SetupSingleIssuer | ring.SetupDeferTaskrun | ring.SetupTaskrunFlag
	for _, tc := range []struct {
		name   string
		finish func(r *ring.Ring) error // runs the flagged work
	}{
		{"Reap", func(r *ring.Ring) error { return nil }},
		{"submit", func(r *ring.Ring) error {
			prep(t, r, func(s *ring.SQE) { s.PrepNop(2) })
			_, err := r.SubmitAndWait(0, 0)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t, flags)
			r := newRing(t, ring.Config{Entries: 8, Flags: flags})
			a, b := socketpair(t)
			prep(t, r, func(s *ring.SQE) { s.PrepPollAdd(int32(a), unix.POLLIN, 1) })
			if _, err := r.SubmitAndWait(0, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := unix.Write(b, []byte{1}); err != nil {
				t.Fatal(err) // the poll's wake queues its completion as task work
			}
			var buf [4]ring.CQE
			enters := r.Enters()
			if n := r.ReapPosted(buf[:]); n != 0 || r.Enters() != enters {
				t.Fatalf("ReapPosted with the poll's completion deferred = %d CQEs, %d enters; want 0, 0", n, r.Enters()-enters)
			}
			if err := tc.finish(r); err != nil {
				t.Fatal(err)
			}
			var n int
			if tc.name == "Reap" {
				n = r.Reap(buf[:])
			} else {
				n = r.ReapPosted(buf[:])
			}
			polled := false
			for _, c := range buf[:n] {
				polled = polled || c.UserData == 1
			}
			if !polled {
				t.Fatalf("after the work ran: CQEs %+v, without the poll's", buf[:n])
			}
			if got := r.Enters() - enters; got != 1 {
				t.Fatalf("%d enters to post the poll's completion, want 1", got)
			}
		})
	}
}
