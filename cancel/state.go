package cancel

import "fmt"

// Phase is where a request is in its life; see the package doc's table.
type Phase uint8

const (
	// Free: the slot is on the table's free list; no request lives in it.
	Free Phase = iota
	// Submitted: acquired and handed to the loop, not yet armed. Cancellable;
	// whoever takes it from the loop's queue calls Arm.
	Submitted
	// OnQueue: armed with the backend; the kernel owes one completion for
	// the tag. Cancellable; a cancel must go through the loop and the kernel.
	OnQueue
	// PendingWork: the backend woke it but the wakeup did not satisfy it
	// (spurious, or the other direction of a shared one-shot epoll fd). The
	// loop holds it and calls Requeue; still cancellable.
	PendingWork
	// Completing: the outcome is decided and exactly one actor was told
	// MustDeliver. Nothing can change the outcome any more.
	Completing
	// Done: the outcome was delivered. The slot is released once the kernel
	// owes nothing for its tag.
	Done

	numPhases = iota
)

var phaseNames = [...]string{"Free", "Submitted", "OnQueue", "PendingWork", "Completing", "Done"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// Outcome is what the one completion of a request says.
type Outcome uint8

const (
	// Undecided: no one has won yet.
	Undecided Outcome = iota
	// Ready: the backend reported readiness; the reactor keeps the events.
	Ready
	// Failed: the backend reported an error (at arm time or in its
	// completion); the reactor keeps the error.
	Failed
	// Canceled: a canceller won; the reactor delivers ErrCanceled.
	Canceled
	// Closed: the closer won; the reactor delivers ErrClosed.
	Closed

	numOutcomes = iota
)

var outcomeNames = [...]string{"Undecided", "Ready", "Failed", "Canceled", "Closed"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// aborted reports whether o is decided by a canceller or the closer rather
// than by the backend.
func (o Outcome) aborted() bool { return o == Canceled || o == Closed }

// Action is the set of obligations a transition hands its caller. Zero
// (NothingToDo) means the caller owns nothing: someone else will finish.
type Action uint8

const (
	// NothingToDo: the caller owns nothing.
	NothingToDo Action = 0
	// MustArm: arm the backend for h.Tag() now (or, if the backend refuses
	// synchronously, call h.Steal). The kernel owes one completion for the
	// tag from this point, reported with h.Wake.
	MustArm Action = 1 << (iota - 1)
	// MustDeliver: the outcome (h.State().Outcome()) is decided and the
	// caller is the only one who will ever be told to deliver it. Deliver it
	// on the loop, then call h.Delivered.
	MustDeliver
	// MustAskLoopToCancel: the request is armed; hand the handle to the loop,
	// which calls h.Withdraw (delivered now, the kernel's report still
	// owed), or, for a request whose every kernel report must be seen
	// before its end (a receive whose bytes come first, Received), asks the
	// backend to cancel and waits: the kernel's last report then delivers
	// it (OnQueue/a+owes Wake or Disarmed → MustDeliver). The outcome is
	// already decided.
	MustAskLoopToCancel
	// MustCancelInKernel: ask the backend to remove the arm for h.Tag(). Its
	// final completion for the tag is still owed: report it with h.Wake (a
	// reaped CQE) or h.Disarmed (a synchronous removal such as epoll DEL).
	MustCancelInKernel
	// MustRequeue: the wakeup did not satisfy the request and the caller
	// holds it; call h.Requeue (which re-arms or finishes it as cancelled).
	MustRequeue
	// MustRelease: the request was delivered and the kernel owes nothing for
	// its tag; call Table.Release(h). Handed out exactly once per life.
	MustRelease
	// Stale: the handle or tag belongs to an earlier life of the slot, or the
	// kernel owed nothing for it. Nothing was touched; count it and move on.
	Stale
	// MustConsume: the kernel's report carries bytes it took for the
	// request (Received); hand them to the request's consumer, whatever
	// the outcome. The state machine never drops them: what the consumer
	// does with bytes that arrive after it stopped is its own decision.
	MustConsume

	allActions = MustArm | MustDeliver | MustAskLoopToCancel | MustCancelInKernel |
		MustRequeue | MustRelease | Stale | MustConsume
)

var actionNames = [...]string{"MustArm", "MustDeliver", "MustAskLoopToCancel",
	"MustCancelInKernel", "MustRequeue", "MustRelease", "Stale", "MustConsume"}

// Has reports whether a includes every obligation in b.
func (a Action) Has(b Action) bool { return a&b == b && b != 0 }

func (a Action) String() string {
	if a == NothingToDo {
		return "NothingToDo"
	}
	s := ""
	for i, n := range actionNames {
		if a&(1<<i) != 0 {
			if s != "" {
				s += "|"
			}
			s += n
		}
	}
	if a&^allActions != 0 {
		s += fmt.Sprintf("|Action(%#x)", uint8(a&^allActions))
	}
	return s
}

// The state word of a slot, one atomic uint64 changed only by CAS:
//
//	 63  62  61                 24 23      8   7      6    5     3 2     0
//	+---+---+---------------------+---------+------+------+-------+-------+
//	| 0 | 0 |  generation (38)    | unused  |stolen| owes |outcome| phase |
//	+---+---+---------------------+---------+------+------+-------+-------+
//
// The generation sits at the same bits in the word and in the tag, so a tag
// is the word's generation field ORed with the slot index + 1 (bits 0..23):
// it is never zero, bit 63, which the poller keeps for its own internal
// completions, is always clear, and so is bit 62 (CallerBit), which a
// caller may set in tags of its own to tell them from cancel's. The generation moves on when a slot is
// released, so a handle or tag from an earlier life never matches again.
//
// The fields are written as literal masks, not derived from widths, so the
// layout reads off this block; TestStateWordLayout checks that the fields
// are contiguous and disjoint, that they hold every Phase and Outcome, and
// that the generation stops short of bit 62.
const (
	phaseShift = 0
	phaseMask  = 0x07 // bits 0-2

	outcomeShift = 3
	outcomeMask  = 0x38 // bits 3-5

	// owesBit: the kernel still owes a completion for this life's tag.
	owesBit = 0x40 // bit 6
	// stolenBit: the request was completed without any kernel completion
	// (cancelled before arming, arm refused, ready at submit). Diagnostic:
	// it implies !owes from the moment it is set.
	stolenBit = 0x80 // bit 7

	lowMask = 0xff // phaseMask | outcomeMask | owesBit | stolenBit

	indexBits = 24
	indexMask = 0x00ff_ffff // in a tag: slot index + 1; 0 is never a tag

	genShift = 24
	genBits  = 38
	genMask  = 0x3fff_ffff_ff00_0000 // bits 24-61
	genOne   = 0x0000_0000_0100_0000 // the generation's lowest bit

	// maxSlots: index+1 must fit the tag's index field.
	maxSlots = indexMask
)

// CallerBit is never set in a tag of this package's: a caller that names
// requests of its own to the same kernel (the reactor's Conn receives)
// sets it in their tags, so that one is never taken for the other. 38
// bits of generation still take a slot 2.7e11 lives to wrap.
const CallerBit uint64 = 1 << 62

// TagIndexBits is how many low bits of a tag hold its slot's index + 1
// (never 0). A backend that records tags by index (the poller's ledger)
// must have at least this many.
const TagIndexBits = indexBits

// pack builds a state word; it panics on an out-of-range field because such
// a word would corrupt its neighbours.
func pack(gen uint64, p Phase, o Outcome, owes, stolen bool) uint64 {
	if gen&^genMask != 0 {
		panic(fmt.Sprintf("cancel: generation field %#x outside the generation bits", gen))
	}
	if p >= numPhases {
		panic(fmt.Sprintf("cancel: phase %d out of range", p))
	}
	if o >= numOutcomes {
		panic(fmt.Sprintf("cancel: outcome %d out of range", o))
	}
	w := gen | uint64(p)<<phaseShift | uint64(o)<<outcomeShift
	if owes {
		w |= owesBit
	}
	if stolen {
		w |= stolenBit
	}
	return w
}

// with returns w with a new phase and outcome, keeping the other fields.
func with(w uint64, p Phase, o Outcome) uint64 {
	return w&^(phaseMask|outcomeMask) | uint64(p)<<phaseShift | uint64(o)<<outcomeShift
}

// State is a snapshot of a slot's state word.
type State uint64

// Phase returns the phase in the snapshot.
func (s State) Phase() Phase { return Phase(s & phaseMask >> phaseShift) }

// Outcome returns the decided outcome, or Undecided.
func (s State) Outcome() Outcome { return Outcome(s & outcomeMask >> outcomeShift) }

// Owes reports whether the kernel still owes a completion for the tag.
func (s State) Owes() bool { return s&owesBit != 0 }

// Stolen reports whether the request was completed without the kernel.
func (s State) Stolen() bool { return s&stolenBit != 0 }

// Gen returns the generation: 0 for a slot's first life, then +1 (modulo
// 2^38) per Release.
func (s State) Gen() uint64 { return uint64(s&genMask) >> genShift }

// Cancellable reports whether a Cancel on this snapshot's life would still
// decide the outcome: the request is live and nothing has won yet.
func (s State) Cancellable() bool {
	p := s.Phase()
	return (p == Submitted || p == OnQueue || p == PendingWork) && s.Outcome() == Undecided
}

func (s State) String() string {
	str := fmt.Sprintf("gen=%d %v %v", s.Gen(), s.Phase(), s.Outcome())
	if s.Owes() {
		str += " owes"
	}
	if s.Stolen() {
		str += " stolen"
	}
	return str
}
