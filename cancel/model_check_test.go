package cancel_test

import (
	"fmt"

	"github.com/oneshot-io/oneshot/cancel"
)

// The model world's checks: after every step, at the end of a run, and the
// coverage a run reached.

// coverage counts what a run exercised, so the tests can show that a
// scenario really reached the collision it is named after.
type coverage struct {
	outcomes    [5]int // deliveries by outcome
	stolen      int    // deliveries of a request completed without the kernel
	staleLookup int    // reaped tags Lookup refused (slot recycled)
	staleWake   int    // reaped tags of a live slot the kernel no longer owed
	staleCancel int    // Cancels through a recycled handle
	reused      int    // Acquires that got a slot an earlier request used
	cancelWon   int    // Cancels that returned true
	consumed    int    // reports with bytes handed over (Received)
}

func (c *coverage) add(d coverage) {
	for i := range c.outcomes {
		c.outcomes[i] += d.outcomes[i]
	}
	c.stolen += d.stolen
	c.staleLookup += d.staleLookup
	c.staleWake += d.staleWake
	c.staleCancel += d.staleCancel
	c.reused += d.reused
	c.cancelWon += d.cancelWon
	c.consumed += d.consumed
}

func (c coverage) String() string {
	return fmt.Sprintf("ready=%d failed=%d canceled=%d closed=%d stolen=%d staleLookup=%d staleWake=%d staleCancel=%d reused=%d consumed=%d",
		c.outcomes[cancel.Ready], c.outcomes[cancel.Failed], c.outcomes[cancel.Canceled], c.outcomes[cancel.Closed],
		c.stolen, c.staleLookup, c.staleWake, c.staleCancel, c.reused, c.consumed)
}

// checkStep checks every live request after one atomic step.
func (w *world) checkStep() {
	for r, l := range w.reqs {
		if !l.created || !l.h.Current() {
			continue
		}
		st := l.h.State()
		if msg := wellFormed(st); msg != "" {
			w.fail("request %d: %s: %v", r, msg, st)
		}
		if w.owed[l.h.Tag()] && !st.Owes() {
			w.fail("request %d: the kernel owes its tag but the word says not: %v", r, st)
		}
		if l.mustDeliver > 0 && st.Cancellable() {
			w.fail("request %d cancellable after MustDeliver: %v", r, st)
		}
		o := st.Outcome()
		switch {
		case l.decided == cancel.Undecided && o != cancel.Undecided:
			l.decided, l.decider = o, w.actor
			if !deciderMayDecide(w.actor, o) {
				w.fail("request %d decided %v by %v", r, o, w.actor)
			}
		case l.decided != o:
			w.fail("request %d outcome changed from %v to %v", r, l.decided, o)
		}
	}
}

func wellFormed(st cancel.State) string {
	p, o := st.Phase(), st.Outcome()
	switch {
	case p == cancel.Free:
		return "a live life in a Free slot"
	case p == cancel.OnQueue && !st.Owes():
		return "OnQueue without owes"
	case (p == cancel.Submitted || p == cancel.PendingWork) && st.Owes():
		return "owes while not armed"
	case (p == cancel.Completing || p == cancel.Done) && o == cancel.Undecided:
		return "completing without an outcome"
	case (p == cancel.Submitted || p == cancel.OnQueue || p == cancel.PendingWork) &&
		o != cancel.Undecided && o != cancel.Canceled && o != cancel.Closed:
		return "a backend outcome before completing"
	case st.Stolen() && st.Owes():
		return "stolen but owed"
	}
	return ""
}

func deciderMayDecide(actor step, o cancel.Outcome) bool {
	switch o {
	case cancel.Canceled:
		return actor.kind == stCancel
	case cancel.Closed:
		return actor.kind == stClose
	default: // Ready, Failed: the loop reaping or stealing
		return actor.kind == stLoopTask || actor.kind == stReap
	}
}

// checkEnd checks a finished run: exactly one completion each, Cancel's
// reports, the kernel paid, every slot free.
func (w *world) checkEnd() {
	for r, l := range w.reqs {
		switch {
		case l.rejected:
			continue
		case len(l.delivered) != 1:
			w.fail("request %d delivered %d times: %v", r, len(l.delivered), l.delivered)
			continue
		case !l.released:
			w.fail("request %d never released", r)
		}
		if l.consumed != l.dataPosted {
			w.fail("request %d: the kernel posted %d reports with bytes, %d handed over", r, l.dataPosted, l.consumed)
		}
		got := l.delivered[0]
		if got != l.decided {
			w.fail("request %d delivered %v but %v won", r, got, l.decided)
		}
		if (got == cancel.Canceled) != (l.canceledOK > 0) {
			w.fail("request %d delivered %v but Cancel returned true %d times", r, got, l.canceledOK)
		}
		if got == cancel.Canceled && l.canceledNo > 0 {
			w.fail("request %d delivered Canceled but a Cancel returned false", r)
		}
		if got == cancel.Closed && !w.closed {
			w.fail("request %d delivered Closed without a closer", r)
		}
		if got == cancel.Ready || got == cancel.Failed {
			if !w.scriptCan(r, got) {
				w.fail("request %d delivered %v, which its backend never reported", r, got)
			}
		}
	}
	if len(w.owed) != 0 || len(w.armed) != 0 || len(w.cq) != 0 {
		w.fail("the kernel is not paid: owed=%v armed=%d cq=%d", w.owed, len(w.armed), len(w.cq))
	}
	w.tb.Range(func(h handle, st cancel.State) bool {
		w.fail("slot %d still live at the end: %v", h.Index(), st)
		return false
	})
}

func (w *world) scriptCan(r int, o cancel.Outcome) bool {
	for _, s := range w.sc.reqs[r] {
		if (s.refuse && o == cancel.Failed) || (s.readyAtSubmit && o == cancel.Ready) ||
			(!s.refuse && !s.readyAtSubmit && !s.never && s.fire == o) {
			return true
		}
	}
	return false
}
