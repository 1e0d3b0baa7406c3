package cancel

import "fmt"

// Handle names one life of a slot: the slot and the generation it had when
// the request began. It is a small value, safe to copy and to use from any
// goroutine; once the slot is released every method sees a generation
// mismatch and touches nothing.
//
// Each transition decides with one CAS on the slot's state word and returns
// the obligations the caller now holds. The package doc's table lists them.
type Handle[T any] struct {
	s   *Slot[T]
	tag uint64 // generation field (as in the state word) | index+1
}

// IsZero reports whether h is the zero Handle (no request).
func (h Handle[T]) IsZero() bool { return h.s == nil }

// Tag returns the 64-bit kernel user_data for this life: generation and
// slot index + 1. It is never zero and never has bit 63 set.
func (h Handle[T]) Tag() uint64 { return h.tag }

// Index returns the slot's index in its table.
func (h Handle[T]) Index() int { return int(h.tag&indexMask) - 1 }

// Data returns the slot's payload. See Slot.Data for who may touch it.
func (h Handle[T]) Data() *T { return &h.s.Data }

// State returns a snapshot of the slot's state word. Its generation differs
// from h's once this life is over (see Current).
func (h Handle[T]) State() State { return State(h.s.state.Load()) }

// Current reports whether the slot still holds h's life.
func (h Handle[T]) Current() bool { return h.s.state.Load()&genMask == h.gen() }

// Gen returns h's generation, comparable with State.Gen.
func (h Handle[T]) Gen() uint64 { return h.tag & genMask >> genShift }

// gen returns the generation field as it sits in the state word.
func (h Handle[T]) gen() uint64 { return h.tag & genMask }

func (h Handle[T]) bug(op string, w uint64) string {
	return fmt.Sprintf("cancel: %s on slot %d gen %d in state %v", op, h.Index(), h.Gen(), State(w))
}

// Arm is called by the loop when it takes a Submitted request from its queue.
//
//   - Undecided: now OnQueue and the kernel owes a completion; returns
//     MustArm: arm the backend for h.Tag().
//   - Cancelled or closed while queued: stolen, never armed; returns
//     MustDeliver with the abort's outcome.
//
// Any other state is a reactor bug and panics: only the loop's queue entry
// may arm a request, and it does so once.
func (h Handle[T]) Arm() Action {
	for {
		w := h.s.state.Load()
		if w&genMask != h.gen() || State(w).Phase() != Submitted {
			panic(h.bug("Arm", w))
		}
		var next uint64
		var a Action
		if o := State(w).Outcome(); o == Undecided {
			next, a = with(w, OnQueue, Undecided)|owesBit, MustArm
		} else {
			next, a = with(w, Completing, o)|stolenBit, MustDeliver
		}
		if h.s.state.CompareAndSwap(w, next) {
			return a
		}
	}
}

// Steal is called by the loop when the backend did not arm a request it was
// told to arm (MustArm): the arm failed synchronously (o == Failed) or the
// backend saw readiness at submit and armed nothing (o == Ready). The kernel
// owes nothing for the tag.
//
//   - OnQueue, undecided: completed inline with o; MustDeliver.
//   - OnQueue, a cancel or close already won: completed inline with that
//     outcome (the canceller's later Withdraw finds nothing); MustDeliver.
//   - PendingWork, Completing or Done: a wakeup already took it and its
//     taker finishes it; NothingToDo.
//   - A later life: Stale.
func (h Handle[T]) Steal(o Outcome) Action {
	if o != Ready && o != Failed {
		panic(fmt.Sprintf("cancel: Steal with outcome %v (want Ready or Failed)", o))
	}
	for {
		w := h.s.state.Load()
		if w&genMask != h.gen() {
			return Stale
		}
		st := State(w)
		switch st.Phase() {
		case OnQueue:
		case PendingWork, Completing, Done:
			return NothingToDo
		default:
			panic(h.bug("Steal", w))
		}
		if cur := st.Outcome(); cur != Undecided {
			o = cur
		}
		if h.s.state.CompareAndSwap(w, with(w, Completing, o)&^owesBit|stolenBit) {
			return MustDeliver
		}
	}
}

// Wake is called by the loop with the kernel's one completion for an arm of
// h (found with Table.Lookup on a reaped CQE or epoll event). o classifies
// it: Ready or Failed if it satisfies the request, Undecided if it does not
// (spurious, or the other direction of a shared one-shot fd).
//
//   - OnQueue, undecided, o decided: MustDeliver with o.
//   - OnQueue, undecided, o Undecided: PendingWork; MustRequeue.
//   - OnQueue, cancelled or closed: MustDeliver with that outcome, whatever o.
//   - Completing: the kernel is paid; NothingToDo (the deliverer releases).
//   - Done: the kernel is paid and delivery happened; MustRelease.
//   - The kernel owed nothing, or a later life: Stale (nothing touched).
func (h Handle[T]) Wake(o Outcome) Action {
	if o != Ready && o != Failed && o != Undecided {
		panic(fmt.Sprintf("cancel: Wake with outcome %v (want Ready, Failed or Undecided)", o))
	}
	return h.reap(o, "Wake")
}

// Disarmed reports that the backend removed h's arm synchronously (epoll
// DEL after MustCancelInKernel): the kernel owes nothing more for the tag.
// Results as for Wake; it panics on an undecided OnQueue request, which no
// one asked to cancel.
func (h Handle[T]) Disarmed() Action { return h.reap(numOutcomes, "Disarmed") }

// Received is called by the loop for a kernel report that carries bytes
// for h and is not its last: a multishot receive's completion with more to
// follow (a last one carrying bytes is Received, then Wake). The kernel
// posts such reports only while it owes the last one, so they come in
// exactly the states that owe, before the request is released, whatever
// the outcome: an abort decided by Cancel or Close, or an early delivery
// (Withdraw), does not stop bytes already taken. It changes nothing.
//
//   - The kernel owes (OnQueue, Completing or Done, +owes): MustConsume.
//   - It owes nothing, or a later life: Stale (a buffer it names still
//     goes back; the caller does that).
func (h Handle[T]) Received() Action {
	if w := h.s.state.Load(); w&genMask != h.gen() || w&owesBit == 0 {
		return Stale
	}
	return MustConsume
}

func (h Handle[T]) reap(o Outcome, op string) Action {
	for {
		w := h.s.state.Load()
		if w&genMask != h.gen() || w&owesBit == 0 {
			return Stale
		}
		st := State(w)
		var next uint64
		var a Action
		switch st.Phase() {
		case OnQueue:
			// An if chain, not a tagless switch: Go's coverage does not
			// attribute case expressions to a block, so mutation testing
			// would count their mutants as never run.
			if cur := st.Outcome(); cur != Undecided {
				next, a = with(w, Completing, cur), MustDeliver
			} else if o == numOutcomes {
				panic(h.bug(op+" (no one asked to cancel)", w))
			} else if o == Undecided {
				next, a = with(w, PendingWork, Undecided), MustRequeue
			} else {
				next, a = with(w, Completing, o), MustDeliver
			}
		case Completing:
			next, a = w, NothingToDo
		case Done:
			next, a = w, MustRelease
		default:
			panic(h.bug(op+" (owes outside OnQueue/Completing/Done)", w))
		}
		if h.s.state.CompareAndSwap(w, next&^owesBit) {
			return a
		}
	}
}

// Requeue is called by the loop holding a PendingWork request (MustRequeue).
//
//   - Undecided: back OnQueue, the kernel owes again; MustArm.
//   - Cancelled or closed meanwhile: finished as the abort; MustDeliver.
func (h Handle[T]) Requeue() Action {
	for {
		w := h.s.state.Load()
		if w&genMask != h.gen() || State(w).Phase() != PendingWork {
			panic(h.bug("Requeue", w))
		}
		var next uint64
		var a Action
		if o := State(w).Outcome(); o == Undecided {
			next, a = with(w, OnQueue, Undecided)|owesBit, MustArm
		} else {
			next, a = with(w, Completing, o), MustDeliver
		}
		if h.s.state.CompareAndSwap(w, next) {
			return a
		}
	}
}

// Cancel decides the outcome as Canceled if nothing has won yet. Safe from
// any goroutine, any number of times. It reports whether h's one completion
// is or will be Canceled, and what the caller must do:
//
//   - Submitted or PendingWork: true; NothingToDo (the loop holds the queue
//     entry or the woken request and finishes it as cancelled).
//   - OnQueue: true; MustAskLoopToCancel.
//   - Already decided: reports whether that was a cancel; NothingToDo.
//   - A later life: false; Stale. The slot was recycled, so h's request was
//     delivered long ago; a caller that must answer true for a repeated
//     cancel of a cancelled request remembers the delivered outcome itself.
func (h Handle[T]) Cancel() (bool, Action) { return h.abort(Canceled) }

// Close is Cancel for the closer: it decides Closed if nothing has won.
func (h Handle[T]) Close() Action {
	_, a := h.abort(Closed)
	return a
}

func (h Handle[T]) abort(o Outcome) (bool, Action) {
	for {
		w := h.s.state.Load()
		if w&genMask != h.gen() {
			return false, Stale
		}
		st := State(w)
		if cur := st.Outcome(); cur != Undecided {
			return cur == o, NothingToDo
		}
		var a Action
		switch st.Phase() {
		case Submitted, PendingWork:
			a = NothingToDo
		case OnQueue:
			a = MustAskLoopToCancel
		default:
			// Free, Completing and Done always carry a decided outcome
			// within a matching generation.
			panic(h.bug(o.String(), w))
		}
		if h.s.state.CompareAndSwap(w, with(w, st.Phase(), o)) {
			return true, a
		}
	}
}

// Withdraw is called by the loop for a handle a canceller or the closer sent
// it (MustAskLoopToCancel).
//
//   - OnQueue (cancelled or closed): Completing; MustDeliver|MustCancelInKernel.
//     The outcome can be delivered at once, but the slot stays unreusable
//     until the kernel's final completion for the tag is reported with Wake
//     or Disarmed.
//   - Anything else: the kernel's completion or a Steal got there first and
//     its taker finishes; NothingToDo. A later life: Stale.
func (h Handle[T]) Withdraw() Action {
	for {
		w := h.s.state.Load()
		if w&genMask != h.gen() {
			return Stale
		}
		st := State(w)
		if st.Phase() != OnQueue {
			return NothingToDo
		}
		o := st.Outcome()
		if !o.aborted() {
			panic(h.bug("Withdraw (no one asked to cancel)", w))
		}
		if h.s.state.CompareAndSwap(w, with(w, Completing, o)) {
			return MustDeliver | MustCancelInKernel
		}
	}
}

// Delivered is called by the loop after delivering the outcome it was told
// to deliver (MustDeliver). Returns MustRelease if the kernel owes nothing
// for the tag; otherwise the report of the kernel's final completion
// (Wake/Disarmed) returns it.
func (h Handle[T]) Delivered() Action {
	for {
		w := h.s.state.Load()
		if w&genMask != h.gen() || State(w).Phase() != Completing {
			panic(h.bug("Delivered", w))
		}
		a := NothingToDo
		if w&owesBit == 0 {
			a = MustRelease
		}
		if h.s.state.CompareAndSwap(w, with(w, Done, State(w).Outcome())) {
			return a
		}
	}
}
