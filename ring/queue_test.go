//go:build linux

package ring_test

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/ring"
)

// seen counts completions per user_data and fails on a double or a stranger.
type seen struct {
	t     testing.TB
	count []uint8
	total int
}

func newSeen(t testing.TB, n int) *seen { return &seen{t: t, count: make([]uint8, n)} }

func (s *seen) add(cqes []ring.CQE) {
	s.t.Helper()
	for _, c := range cqes {
		if c.UserData >= uint64(len(s.count)) || c.Res != 0 {
			s.t.Fatalf("unexpected CQE %+v", c)
		}
		if s.count[c.UserData]++; s.count[c.UserData] > 1 {
			s.t.Fatalf("user_data %d completed twice", c.UserData)
		}
		s.total++
	}
}

func (s *seen) all() {
	s.t.Helper()
	for ud, c := range s.count {
		if c != 1 {
			s.t.Fatalf("user_data %d completed %d times, want once (total %d)", ud, c, s.total)
		}
	}
}

// TestManyNopsWrapAround pushes 100,000 NOPs through a 64-entry ring: the
// indices wrap many times, GetSQE must say ErrSQFull instead of
// overwriting, and every user_data must complete exactly once.
func TestManyNopsWrapAround(t *testing.T) {
	for _, tc := range pollFlagCases {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t, tc.flags)
			r := newRing(t, ring.Config{Entries: 64, Flags: tc.flags})
			if r.SQEntries() != 64 {
				t.Fatalf("SQEntries = %d, want 64", r.SQEntries())
			}
			const total = 100_000
			s := newSeen(t, total)
			buf := make([]ring.CQE, 256)
			next, fulls := uint64(0), 0
			for s.total < total {
				for next < total {
					sqe, err := r.GetSQE()
					if errors.Is(err, ring.ErrSQFull) {
						fulls++
						if got := r.SQReady(); got != r.SQEntries() {
							t.Fatalf("ErrSQFull with SQReady %d of %d", got, r.SQEntries())
						}
						break
					}
					if err != nil {
						t.Fatalf("GetSQE: %v", err)
					}
					sqe.PrepNop(next)
					next++
				}
				if _, err := r.SubmitAndWait(1, time.Second); err != nil {
					t.Fatalf("SubmitAndWait: %v", err)
				}
				s.add(buf[:r.Reap(buf)])
			}
			s.all()
			if fulls == 0 {
				t.Fatal("the SQ never filled up: the test did not exercise ErrSQFull")
			}
			if n := r.Reap(buf); n != 0 {
				t.Fatalf("%d CQEs after all were counted", n)
			}
		})
	}
}

// TestCQOverflowLosesNothing submits far more NOPs than the CQ holds
// without reaping; the kernel must park the excess on its overflow list
// and Reap must bring every one back.
func TestCQOverflowLosesNothing(t *testing.T) {
	for _, tc := range pollFlagCases {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t, tc.flags)
			r := newRing(t, ring.Config{Entries: 16, CQEntries: 32, Flags: tc.flags})
			if !r.Features().Has(ring.FeatNoDrop) {
				t.Skip("kernel lacks IORING_FEAT_NODROP")
			}
			const total = 2000
			s := newSeen(t, total)
			buf := make([]ring.CQE, 64)
			for next := uint64(0); next < total; {
				for ; next < total; next++ {
					sqe, err := r.GetSQE()
					if errors.Is(err, ring.ErrSQFull) {
						break
					}
					if err != nil {
						t.Fatalf("GetSQE: %v", err)
					}
					sqe.PrepNop(next)
				}
				if _, err := r.SubmitAndWait(0, 0); err != nil {
					if !errors.Is(err, unix.EBUSY) {
						t.Fatalf("SubmitAndWait: %v", err)
					}
					// Old kernels refuse to submit while the overflow
					// list is non-empty: reap, as the error says.
					s.add(buf[:r.Reap(buf)])
				}
			}
			if ready := r.CQReady(); ready != r.CQEntries() {
				t.Fatalf("CQReady = %d, want a full CQ of %d (no overflow happened)", ready, r.CQEntries())
			}
			for s.total < total {
				n := r.Reap(buf)
				if n == 0 {
					t.Fatalf("Reap returned 0 with %d of %d completions seen", s.total, total)
				}
				s.add(buf[:n])
			}
			s.all()
			if d := r.Dropped(); d != 0 {
				t.Fatalf("kernel dropped %d completions", d)
			}
		})
	}
}

// TestTimedWaitNothingReady waits with nothing in flight: it must return
// nil after at least the timeout, with no CQE.
func TestTimedWaitNothingReady(t *testing.T) {
	tests := []struct {
		name  string
		force bool // TIMEOUT-SQE fallback instead of EXT_ARG
	}{{"ext-arg", false}, {"timeout-sqe", true}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(t, ring.Config{Entries: 4})
			if tc.force {
				ring.ForceTimeoutSQE(r)
			} else if !r.Features().Has(ring.FeatExtArg) {
				t.Skip("kernel lacks IORING_FEAT_EXT_ARG")
			}
			const d = 30 * time.Millisecond
			start := time.Now()
			if _, err := r.SubmitAndWait(1, d); err != nil {
				t.Fatalf("SubmitAndWait: %v", err)
			}
			el := time.Since(start)
			if el < d {
				t.Fatalf("returned after %v, before the %v timeout", el, d)
			}
			if el > d+2*time.Second {
				t.Fatalf("returned after %v, far past the %v timeout", el, d)
			}
			var buf [4]ring.CQE
			if n := r.Reap(buf[:]); n != 0 {
				t.Fatalf("got CQEs %+v, want none", buf[:n])
			}
			if tc.force {
				return
			}
			// EXT_ARG consumes no SQE: nothing was queued to the kernel.
			if r.SQReady() != 0 {
				t.Fatalf("SQReady = %d after an EXT_ARG wait", r.SQReady())
			}
		})
	}
}

// TestTimedWaitReturnsOnCompletion checks that a long timed wait ends as
// soon as the completion it waits for arrives, for both timeout mechanisms.
func TestTimedWaitReturnsOnCompletion(t *testing.T) {
	for _, force := range []bool{false, true} {
		r := newRing(t, ring.Config{Entries: 4})
		if force {
			ring.ForceTimeoutSQE(r)
		}
		prep(t, r, func(s *ring.SQE) { s.PrepNop(5) })
		start := time.Now()
		if _, err := r.SubmitAndWait(1, time.Minute); err != nil {
			t.Fatalf("SubmitAndWait: %v", err)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("force=%v: waited %v for a NOP", force, el)
		}
		var buf [4]ring.CQE
		if n := r.Reap(buf[:]); n != 1 || buf[0].UserData != 5 {
			t.Fatalf("force=%v: reaped %+v, want the NOP alone", force, buf[:n])
		}
	}
}

// TestTimedWaitAlreadySatisfied: a timed wait for CQEs that are already
// ready returns at once with both timeout mechanisms. The TIMEOUT-SQE
// fallback used to queue its timer and sleep until one more CQE came, here
// the timer itself at the deadline.
func TestTimedWaitAlreadySatisfied(t *testing.T) {
	const timeout = 20 * time.Second
	for _, force := range []bool{false, true} {
		r := newRing(t, ring.Config{Entries: 4})
		if force {
			ring.ForceTimeoutSQE(r)
		}
		prep(t, r, func(s *ring.SQE) { s.PrepNop(5) })
		if _, err := r.Submit(); err != nil {
			t.Fatalf("Submit: %v", err)
		}
		start := time.Now()
		if _, err := r.SubmitAndWait(1, timeout); err != nil {
			t.Fatalf("SubmitAndWait: %v", err)
		}
		if el := time.Since(start); el > timeout/2 {
			t.Fatalf("force=%v: waited %v with the NOP's CQE already ready", force, el)
		}
		var buf [4]ring.CQE
		if n := r.Reap(buf[:]); n != 1 || buf[0].UserData != 5 {
			t.Fatalf("force=%v: reaped %+v, want the NOP alone", force, buf[:n])
		}
	}
}

func TestUseAfterClose(t *testing.T) {
	r := newRing(t, ring.Config{Entries: 4})
	stale, err := r.GetSQE()
	if err != nil {
		t.Fatalf("GetSQE: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// An SQE obtained before Close lives in Go memory: preparing it is
	// harmless, and nothing can submit it.
	stale.PrepNop(1)
	checks := []struct {
		name string
		err  func() error
	}{
		{"Close", r.Close},
		{"GetSQE", func() error { _, err := r.GetSQE(); return err }},
		{"Submit", func() error { _, err := r.Submit(); return err }},
		{"SubmitAndWait", func() error { _, err := r.SubmitAndWait(1, time.Second); return err }},
		{"Probe", func() error { _, err := r.Probe(); return err }},
	}
	for _, c := range checks {
		if err := c.err(); !errors.Is(err, ring.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", c.name, err)
		}
	}
	var buf [4]ring.CQE
	if n := r.Reap(buf[:]); n != 0 {
		t.Errorf("Reap after Close = %d, want 0", n)
	}
	if r.SQReady() != 0 || r.CQReady() != 0 || r.Dropped() != 0 {
		t.Errorf("SQReady/CQReady/Dropped after Close = %d/%d/%d, want 0", r.SQReady(), r.CQReady(), r.Dropped())
	}
	if r.Fd() != -1 {
		t.Errorf("Fd after Close = %d, want -1", r.Fd())
	}
}
