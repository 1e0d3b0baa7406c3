//go:build linux

package ring_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/ring"
)

// interrupter sends SIGURG (which the Go runtime tolerates) to one thread
// each time /proc shows that thread blocked in io_uring_enter, until stop
// is called, so that io_uring_enter waits there keep returning early: EINTR,
// or a bare submit count when the same call submitted. It counts the
// signals it sent before its deadline: each was sent while the wait was in
// progress. Looking before sending, rather than sending on a clock, is what
// makes that count a proof: on a loaded machine a signal sent on a clock
// may land entirely outside the wait.
type interrupter struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	counted atomic.Int64
}

// interruptThread starts an interrupter aimed at the calling goroutine's
// thread, which it locks until stop. Signals sent before deadline are
// counted; when the count reaches after, then (if not nil) is called once.
func interruptThread(t *testing.T, deadline time.Time, after int64, then func()) *interrupter {
	t.Helper()
	runtime.LockOSThread()
	pid, tid := os.Getpid(), unix.Gettid()
	in := &interrupter{stop: make(chan struct{})}
	syscallFile := fmt.Sprintf("/proc/self/task/%d/syscall", tid)
	enter := fmt.Sprint(unix.SYS_IO_URING_ENTER) + " "
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case <-in.stop:
				return
			case <-tick.C:
			}
			b, err := os.ReadFile(syscallFile)
			if err != nil {
				t.Errorf("reading %s: %v", syscallFile, err)
				return
			}
			if !strings.HasPrefix(string(b), enter) {
				continue
			}
			counts := time.Now().Before(deadline) // decided before the signal goes
			if err := unix.Tgkill(pid, tid, unix.SIGURG); err != nil {
				t.Errorf("tgkill: %v", err)
				return
			}
			if counts && in.counted.Add(1) == after && then != nil {
				then()
			}
		}
	}()
	return in
}

// end stops the interrupter, unlocks the thread, and returns how many
// signals were counted.
func (in *interrupter) end() int64 {
	close(in.stop)
	in.wg.Wait()
	runtime.UnlockOSThread()
	return in.counted.Load()
}

// TestWaitSurvivesSignals waits for two completions, one of which comes
// only after signals have interrupted the wait, or never: SubmitAndWait
// must neither fail nor return before both are ready (untimed), or before
// its timeout (timed, when the second never comes).
//
// Untimed, the second completion is a poll that the interrupter makes
// ready only after it has signalled the waiting thread three times, so the
// wait is interrupted in every run. Timed, the wait ends at its timeout d;
// a signal counted (sent before d/2 to a thread seen in io_uring_enter)
// proves the wait was interrupted, so a run where none was, because the
// interrupter was not scheduled in time, proves nothing and is retried
// with a longer d, a bounded number of times.
func TestWaitSurvivesSignals(t *testing.T) {
	tests := []struct {
		name  string
		force bool // TIMEOUT-SQE fallback
		timed bool
		want  int // CQEs ready on return
	}{
		{"untimed", false, false, 2},
		{"ext-arg", false, true, 1},
		{"timeout-sqe", true, true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for d := 40 * time.Millisecond; ; d *= 2 {
				if waitThroughSignals(t, tc.force, tc.timed, d, tc.want) {
					return
				}
				if d > 2*time.Second {
					t.Fatalf("no signal reached the wait in runs of up to %v: the interrupter was never scheduled in time", d)
				}
				t.Logf("no signal reached the %v wait; again with a longer one", d)
			}
		})
	}
}

// waitThroughSignals is one run of TestWaitSurvivesSignals with timeout d
// (timed) and reports whether it proved something: false for a timed run
// that no counted signal reached.
func waitThroughSignals(t *testing.T, force, timed bool, d time.Duration, want int) bool {
	r := newRing(t, ring.Config{Entries: 8})
	if force {
		ring.ForceTimeoutSQE(r)
	}
	a, b := socketpair(t)
	prep(t, r, func(s *ring.SQE) { s.PrepNop(1) })
	prep(t, r, func(s *ring.SQE) { s.PrepPollAdd(int32(a), unix.POLLIN, 2) })
	timeout := time.Duration(-1)
	var wrote atomic.Bool
	var in *interrupter
	start := time.Now()
	if timed {
		timeout = d
		in = interruptThread(t, start.Add(d/2), 0, nil)
	} else {
		in = interruptThread(t, start.Add(time.Hour), 3, func() {
			wrote.Store(true) // before the write, which may end the wait at once
			if _, err := unix.Write(b, []byte{1}); err != nil {
				t.Errorf("write: %v", err)
			}
		})
	}
	enters := r.Enters()
	_, err := r.SubmitAndWait(2, timeout)
	el := time.Since(start)
	early := !timed && !wrote.Load()
	counted := in.end()
	if err != nil {
		t.Fatalf("SubmitAndWait: %v", err)
	}
	if early {
		t.Fatalf("returned after %v, before the second completion was ready", el)
	}
	if timed && el < d {
		t.Fatalf("returned after %v, before its %v timeout", el, d)
	}
	if counted == 0 {
		return false
	}
	if r.Enters()-enters < 2 {
		t.Fatalf("one io_uring_enter in %v although %d signals reached the wait: the signals never interrupted it", el, counted)
	}
	var buf [4]ring.CQE
	if n := r.Reap(buf[:]); n != want {
		t.Fatalf("reaped %+v, want %d CQEs", buf[:n], want)
	}
	return true
}
