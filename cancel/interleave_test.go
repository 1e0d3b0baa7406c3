package cancel_test

import (
	"testing"

	"github.com/oneshot-io/oneshot/cancel"
)

// explorer enumerates every schedule of a world by depth-first search over
// the choices: each run replays a prefix of choices, then takes the first
// enabled step at every new choice point; the next prefix bumps the deepest
// choice that has an untried alternative.
type explorer struct {
	prefix []int
	trace  []choice
}

type choice struct{ n, picked int }

func (e *explorer) choose(n int) int {
	i := len(e.trace)
	c := 0
	if i < len(e.prefix) {
		c = e.prefix[i]
	}
	e.trace = append(e.trace, choice{n, c})
	return c
}

// next sets up the following schedule; false when all were explored.
func (e *explorer) next() bool {
	for i := len(e.trace) - 1; i >= 0; i-- {
		if c := e.trace[i]; c.picked+1 < c.n {
			e.prefix = e.prefix[:0]
			for _, t := range e.trace[:i] {
				e.prefix = append(e.prefix, t.picked)
			}
			e.prefix = append(e.prefix, c.picked+1)
			e.trace = e.trace[:0]
			return true
		}
	}
	return false
}

// exploreAll runs every schedule of sc and returns how many there were.
func exploreAll(t *testing.T, sc *scenario, limit int) (int, coverage) {
	t.Helper()
	e := &explorer{}
	n := 0
	var cov coverage
	for {
		w := newWorld(sc)
		if err := w.run(e.choose); err != nil {
			t.Fatalf("%s, schedule %v: %v", sc.name, e.trace, err)
		}
		cov.add(w.cov)
		n++
		if n > limit {
			t.Fatalf("%s: more than %d schedules; shrink the scenario", sc.name, limit)
		}
		if !e.next() {
			return n, cov
		}
	}
}

var (
	ready    = armScript{fire: cancel.Ready}
	failed   = armScript{fire: cancel.Failed}
	spurious = armScript{fire: cancel.Undecided}
	never    = armScript{never: true}
	refuse   = armScript{refuse: true}
	atSubmit = armScript{readyAtSubmit: true}
	// receiving posts two reports with bytes and ends only when canceled;
	// receiveEOF ends by itself after them (the peer's EOF).
	receiving  = armScript{never: true, data: 2}
	receiveEOF = armScript{fire: cancel.Ready, data: 2}
)

// scenarios: each collision of DESIGN.md §1, on io_uring (asynchronous
// kernel cancel) and, where the cancel path differs, epoll (synchronous DEL
// that leaves an already-harvested event to be recognised as stale).
var scenarios = []scenario{
	{name: "ready vs cancel (uring)", reqs: [][]armScript{{ready}}, cancellers: []int{0}},
	{name: "ready vs cancel (epoll)", epoll: true, reqs: [][]armScript{{ready}}, cancellers: []int{0}},
	{name: "error completion vs cancel", reqs: [][]armScript{{failed}}, cancellers: []int{0}},
	{name: "ready vs double cancel", reqs: [][]armScript{{ready}}, cancellers: []int{0, 0}},
	{name: "never ready vs double cancel (epoll)", epoll: true, reqs: [][]armScript{{never}}, cancellers: []int{0, 0}},
	{name: "arm error vs cancel", reqs: [][]armScript{{refuse}}, cancellers: []int{0}},
	{name: "ready at submit vs cancel", reqs: [][]armScript{{atSubmit}}, cancellers: []int{0}},
	{name: "spurious, re-arm, ready vs cancel (uring)", reqs: [][]armScript{{spurious, ready}}, cancellers: []int{0}},
	{name: "spurious, re-arm, ready vs cancel (epoll)", epoll: true, reqs: [][]armScript{{spurious, ready}}, cancellers: []int{0}},
	{name: "spurious, re-arm refused vs cancel", reqs: [][]armScript{{spurious, refuse}}, cancellers: []int{0}},
	// Only the cancel can end this one: a cancel that lands while the loop
	// holds the woken request must stop the re-arm (found by FuzzSchedule).
	{name: "spurious, then never ready vs cancel", reqs: [][]armScript{{spurious, never}}, cancellers: []int{0}},
	{name: "close vs ready vs cancel (uring)", reqs: [][]armScript{{ready}}, cancellers: []int{0}, closer: true},
	{name: "close vs ready vs cancel (epoll)", epoll: true, reqs: [][]armScript{{ready}}, cancellers: []int{0}, closer: true},
	{name: "close vs arm error vs cancel", reqs: [][]armScript{{refuse}}, cancellers: []int{0}, closer: true},
	{name: "close vs spurious vs cancel", epoll: true, reqs: [][]armScript{{spurious, ready}}, cancellers: []int{0}, closer: true},
	{name: "close vs never ready", reqs: [][]armScript{{never}}, closer: true},
	{name: "close vs never ready, deliver before DEL (epoll)", epoll: true, deliverFirst: true,
		reqs: [][]armScript{{never}}, cancellers: []int{0}, closer: true},
	{name: "close vs ready vs cancel, deliver before cancel (uring)", deliverFirst: true,
		reqs: [][]armScript{{ready}}, cancellers: []int{0}, closer: true},
	{name: "close vs spurious vs double cancel (uring)",
		reqs: [][]armScript{{spurious, ready}}, cancellers: []int{0, 0}, closer: true},
	{name: "close vs error vs double cancel, deliver before DEL (epoll)", epoll: true, deliverFirst: true,
		reqs: [][]armScript{{failed}}, cancellers: []int{0, 0}, closer: true},
	{name: "slot reuse: two requests, stale events (epoll)", epoll: true,
		reqs: [][]armScript{{ready}, {ready}}, cancellers: []int{0, 1}},
	{name: "slot reuse: two requests, late CQE (uring)",
		reqs: [][]armScript{{ready}, {never}}, cancellers: []int{0, 1}},
	{name: "two requests vs close (uring)",
		reqs: [][]armScript{{spurious, ready}, {refuse}}, cancellers: []int{0}, closer: true},
	// A multishot receive: reports with bytes race the cancel, the close
	// and the early delivery a Withdraw makes; every one is handed over.
	{name: "receive: bytes vs cancel (uring)", reqs: [][]armScript{{receiving}}, cancellers: []int{0}},
	{name: "receive: bytes, EOF vs cancel vs close (uring)", reqs: [][]armScript{{receiveEOF}}, cancellers: []int{0}, closer: true},
	{name: "receive: bytes vs close, deliver before cancel (uring)", deliverFirst: true,
		reqs: [][]armScript{{receiving}}, cancellers: []int{0}, closer: true},
	{name: "receive: bytes vs double cancel (uring)", reqs: [][]armScript{{receiving}}, cancellers: []int{0, 0}},
}

// TestInterleavings explores every ordering of the actors' atomic steps in
// each scenario and checks the invariants after every step and at the end.
//
// A step is one call into the package. That is as fine as interleavings
// need to go: every method is a load-decide-CAS loop whose effect (next
// word and result) is a function of the word its successful CAS replaced,
// and whose failed rounds change nothing, so each call takes effect at one
// instant (the successful CAS, or the final load for a call that returns
// without writing). Any real execution is therefore one of the orders of
// whole calls enumerated here; the CAS retries themselves run in TestStress
// under -race.
func TestInterleavings(t *testing.T) {
	total := 0
	for i := range scenarios {
		sc := &scenarios[i]
		t.Run(sc.name, func(t *testing.T) {
			if testing.Short() && len(sc.reqs) > 1 {
				t.Skip("two-request scenarios take the longest; skipped under -short")
			}
			n, cov := exploreAll(t, sc, 2_000_000)
			total += n
			t.Logf("%s: %d interleavings; %v", sc.name, n, cov)
		})
	}
	t.Logf("total: %d interleavings", total)
}
