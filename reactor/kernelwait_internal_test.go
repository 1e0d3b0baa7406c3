//go:build linux

package reactor

import (
	"runtime"
	"testing"
	"time"
)

func TestKernelTimeout(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name          string
		held, signals bool
		until, want   time.Duration
	}{
		{"unheld waits for its timer", false, true, 5 * ms, 5 * ms},
		{"unheld without a timer waits without a bound", false, true, -1, -1},
		{"unheld without signals still waits for its timer", false, false, -1, -1},
		// An unheld wait is not a raw one: no signal ends it, so even a
		// far timer bounds it (a loop that stopped holding with signals
		// on must still see its timers).
		{"unheld, a far timer bounds it", false, true, time.Hour, time.Hour},
		{"held, a near timer bounds the wait", true, true, 5 * ms, 5 * ms},
		{"held, a timer due now does not sleep", true, true, 0, 0},
		{"held, the signal comes before a far timer", true, true, heldSlack + ms, -1},
		{"held, a timer at heldSlack still bounds it", true, true, heldSlack, heldSlack},
		{"held, no timer: the signal ends it", true, true, -1, -1},
		{"held without signals: heldBound at most", true, false, -1, heldBound},
		{"held without signals, far timer", true, false, time.Hour, heldBound},
		{"held without signals, nearer timer", true, false, heldBound / 2, heldBound / 2},
	} {
		if got := kernelTimeout(tc.held, tc.signals, tc.until); got != tc.want {
			t.Errorf("%s: kernelTimeout(held %v, signals %v, until %v) = %v, want %v",
				tc.name, tc.held, tc.signals, tc.until, got, tc.want)
		}
	}
}

func TestGatherWithin(t *testing.T) {
	for _, tc := range []struct {
		name        string
		until, want time.Duration
	}{
		{"no timer: the whole window", -1, gatherFor},
		{"a far timer: the whole window", time.Second, gatherFor},
		{"a timer within the window caps it", gatherFor / 5, gatherFor / 5},
		{"a timer at the window's end", gatherFor, gatherFor},
		{"a timer due now, or past: no window", 0, 0},
	} {
		if got := gatherWithin(tc.until); got != tc.want {
			t.Errorf("%s: gatherWithin(%v) = %v, want %v", tc.name, tc.until, got, tc.want)
		}
	}
}

func TestAsksGather(t *testing.T) {
	const size = 256
	for _, tc := range []struct {
		name    string
		n       int
		held    bool
		mayHold bool
		want    bool
	}{
		{"a batch, held", 8, true, true, true},
		{"a batch, not held yet but may hold", 8, false, true, true},
		{"a batch, more loops than Ps", 8, false, false, false},
		{"one message at a time", 1, true, true, false},
		{"nothing", 0, true, true, false},
		{"a full buffer: more is waiting", size, true, true, false},
		{"just under a full buffer", size - 1, true, true, true},
	} {
		asked := false
		mayHold := func() bool { asked = true; return tc.mayHold }
		if got := asksGather(tc.n, size, tc.held, mayHold); got != tc.want {
			t.Errorf("%s: asksGather(%d, %d, held %v, mayHold %v) = %v, want %v",
				tc.name, tc.n, size, tc.held, tc.mayHold, got, tc.want)
		}
		if asked && (tc.held || tc.n < 2 || tc.n >= size) {
			t.Errorf("%s: asked mayHold, which takes a lock, where the answer was known", tc.name)
		}
	}
}

func TestStillIdle(t *testing.T) {
	for _, tc := range []struct {
		name       string
		idle, held bool
		timeout    time.Duration
		n          int
		queued     int32
		want       bool
	}{
		{"events end idleness", true, false, -1, 3, 0, false},
		{"events while held", false, true, -1, 1, 0, false},
		{"a held sleep that brought nothing: idle", false, true, -1, 0, 0, true},
		{"a held sleep ended by its timer: idle", false, true, 5 * time.Millisecond, 0, 0, true},
		{"a held sleep ended by a wake with work queued: busy", false, true, -1, 0, 2, false},
		{"a look (timeout 0) says nothing", false, true, 0, 0, 0, false},
		{"a look says nothing when idle either", true, true, 0, 0, 0, true},
		{"an unheld wait with nothing stays idle", true, false, -1, 0, 0, true},
	} {
		if got := stillIdle(tc.idle, tc.held, tc.timeout, tc.n, tc.queued); got != tc.want {
			t.Errorf("%s: stillIdle = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestGodebugNonZero(t *testing.T) {
	for _, tc := range []struct {
		list string
		want bool
	}{
		{"", false},
		{",", false},
		{"asyncpreemptoff=1", true},
		{"asyncpreemptoff=2", true}, // the runtime reads an integer: non-zero is on
		{"asyncpreemptoff=10", true},
		{"asyncpreemptoff=0", false},
		{"asyncpreemptoff=x", false},
		{"asyncpreemptoff=", false},
		{"gctrace=1,asyncpreemptoff=1", true},
		{"gctrace=1, asyncpreemptoff=1", false},       // the runtime matches no spaced key either
		{"asyncpreemptoff=1,asyncpreemptoff=x", true}, // an unparsable value leaves the last standing
		{"asyncpreemptoff=1,asyncpreemptoff=0", false},
		{"asyncpreemptoff=0,asyncpreemptoff=1", true},
		{"xasyncpreemptoff=1", false},
	} {
		if got := godebugNonZero(tc.list, "asyncpreemptoff"); got != tc.want {
			t.Errorf("godebugNonZero(%q) = %v, want %v", tc.list, got, tc.want)
		}
	}
}

func TestPreemptsBySignal(t *testing.T) {
	for _, tc := range []struct {
		godebug string
		want    bool
	}{
		{"", true},
		{"gctrace=1", true},
		{"asyncpreemptoff=1", false},
		{"asyncpreemptoff=3", false},
		{"gccheckmark=1", false}, // the runtime turns asynchronous preemption off for it
		{"gccheckmark=0", true},
	} {
		if got := preemptsBySignal(tc.godebug); got != tc.want {
			t.Errorf("preemptsBySignal(%q) = %v, want %v", tc.godebug, got, tc.want)
		}
	}
}

// TestKernelWaitMoreLoopsThanPs: with more loops than Ps no loop holds its
// P (mayHold), and an idle loop that does not hold waits for its next timer
// rather than turning over every heldBound.
func TestKernelWaitMoreLoopsThanPs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, b := range []Backend{BackendEpoll, BackendUring} {
		t.Run(string(b), func(t *testing.T) {
			r := reactorWith(t, Config{Backend: b, Loops: 2, KernelWait: true})
			turns := func() (n uint64) {
				for _, l := range r.loops {
					n += l.turns.Load()
				}
				return n
			}
			before := turns()
			time.Sleep(300 * time.Millisecond) // the window the idle loops are counted over
			if n := turns() - before; n > 20 {
				t.Fatalf("2 idle loops on 1 P turned %d times in 300 ms: they spin instead of waiting for their timers", n)
			}
		})
	}
}

// TestGatherWindow: a loop's gathering window ends at its next timer, and
// a timer already past leaves none (not the whole window: past is not
// "no timer").
func TestGatherWindow(t *testing.T) {
	l := &loop{}
	if got := l.gatherWindow(); got != gatherFor {
		t.Errorf("no timer: window %v, want %v", got, gatherFor)
	}
	l.sweepAt = nanotime() + int64(time.Hour)
	if got := l.gatherWindow(); got != gatherFor {
		t.Errorf("a timer an hour away: window %v, want %v", got, gatherFor)
	}
	l.sweepAt = 1 // the loops' clock starts at 0 with the package
	if got := l.gatherWindow(); got != 0 {
		t.Errorf("a timer past: window %v, want 0", got)
	}
}
