//go:build linux

package reactor

import (
	"testing"
	"time"
)

func TestKernelTimeout(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name          string
		idle, signals bool
		until, want   time.Duration
	}{
		{"idle waits for its timer", true, true, 5 * ms, 5 * ms},
		{"idle without a timer waits without a bound", true, true, -1, -1},
		{"idle without signals still gives the P up", true, false, -1, -1},
		{"held, a near timer bounds the wait", false, true, 5 * ms, 5 * ms},
		{"held, a timer due now does not sleep", false, true, 0, 0},
		{"held, the signal comes before a far timer", false, true, heldSlack + ms, -1},
		{"held, a timer at heldSlack still bounds it", false, true, heldSlack, heldSlack},
		{"held, no timer: the signal ends it", false, true, -1, -1},
		{"held without signals: heldBound at most", false, false, -1, heldBound},
		{"held without signals, far timer", false, false, time.Hour, heldBound},
		{"held without signals, nearer timer", false, false, heldBound / 2, heldBound / 2},
	} {
		if got := kernelTimeout(tc.idle, tc.signals, tc.until); got != tc.want {
			t.Errorf("%s: kernelTimeout(idle %v, signals %v, until %v) = %v, want %v",
				tc.name, tc.idle, tc.signals, tc.until, got, tc.want)
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
		{"gctrace=1, asyncpreemptoff=1", true},
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
