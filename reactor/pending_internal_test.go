//go:build linux

package reactor

import "testing"

// TestPendingSaturates: a Conn's pending count is 32 bits; past that it
// holds its largest value, and MaxPending is bounded below it, so the
// backpressure check (pending > maxPending) still pauses reading however
// much a handler queued.
func TestPendingSaturates(t *testing.T) {
	r, err := New(Config{Loops: 1, Backend: BackendEpoll})
	if err != nil {
		t.Skipf("reactor: %v", err)
	}
	defer r.Close()
	for _, tc := range []struct{ queued, want int }{
		{0, 0},
		{1 << 20, 1 << 20},
		{maxPendingLimit, maxPendingLimit},
		{maxPendingLimit + 1, maxPendingLimit},
		{1 << 40, maxPendingLimit},
	} {
		c := &Conn{}
		c.storePending(tc.queued)
		if got := c.Pending(); got != tc.want {
			t.Errorf("%d queued: Pending() = %d, want %d", tc.queued, got, tc.want)
		}
	}
	for _, tc := range []struct{ cfg, want int }{
		{0, 1 << 20},
		{5000, 5000},
		{1 << 40, maxPendingLimit - 1},
	} {
		ln := r.newListener(nil, false, nil, ListenConfig{MaxPending: tc.cfg})
		if ln.maxPending != tc.want {
			t.Errorf("MaxPending %d: the listener uses %d, want %d", tc.cfg, ln.maxPending, tc.want)
		}
		if !(maxPendingLimit > ln.maxPending) {
			t.Errorf("MaxPending %d: a saturated count (%d) would not pass it (%d)", tc.cfg, maxPendingLimit, ln.maxPending)
		}
	}
}
