//go:build linux

package ring_test

import (
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/ring"
)

// interruptThread sends SIGURG (which the Go runtime tolerates) to the
// calling goroutine's thread every 200µs until the returned stop is
// called, so that io_uring_enter waits on that thread keep returning
// early: EINTR, or a bare submit count when the same call submitted.
func interruptThread(t *testing.T) (stop func()) {
	t.Helper()
	runtime.LockOSThread()
	pid, tid := os.Getpid(), unix.Gettid()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if err := unix.Tgkill(pid, tid, unix.SIGURG); err != nil {
					t.Errorf("tgkill: %v", err)
					return
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		runtime.UnlockOSThread()
	}
}

// TestWaitSurvivesSignals waits for two completions, one of which comes
// only after 40ms, while signals keep interrupting the wait: SubmitAndWait
// must neither fail nor return before both are ready (untimed), or before
// its timeout (timed, when the second never comes).
func TestWaitSurvivesSignals(t *testing.T) {
	const d = 40 * time.Millisecond
	tests := []struct {
		name    string
		force   bool // TIMEOUT-SQE fallback
		timeout time.Duration
		want    int // CQEs ready on return
	}{
		{"untimed", false, -1, 2},
		{"ext-arg", false, d, 1},
		{"timeout-sqe", true, d, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(t, ring.Config{Entries: 8})
			if tc.force {
				ring.ForceTimeoutSQE(r)
			}
			a, _ := socketpair(t)
			prep(t, r, func(s *ring.SQE) { s.PrepNop(1) })
			if tc.timeout < 0 {
				ts := unix.NsecToTimespec(int64(d))
				prep(t, r, func(s *ring.SQE) { s.PrepTimeout(&ts, 0, 0, 2) })
			} else {
				prep(t, r, func(s *ring.SQE) { s.PrepPollAdd(int32(a), unix.POLLIN, 2) })
			}
			stop := interruptThread(t)
			enters := r.Enters()
			start := time.Now()
			_, err := r.SubmitAndWait(2, tc.timeout)
			el := time.Since(start)
			stop()
			if err != nil {
				t.Fatalf("SubmitAndWait: %v", err)
			}
			if el < d {
				t.Fatalf("returned after %v, before %v", el, d)
			}
			if r.Enters()-enters < 2 {
				t.Fatalf("one io_uring_enter in %v: the signals never interrupted the wait", el)
			}
			var buf [4]ring.CQE
			if n := r.Reap(buf[:]); n != tc.want {
				t.Fatalf("reaped %+v, want %d CQEs", buf[:n], tc.want)
			}
		})
	}
}
