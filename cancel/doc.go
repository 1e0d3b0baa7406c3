// Package cancel is the request state machine of oneshot: a table of
// request slots whose every change is one compare-and-swap on a packed
// state word, so that a request touched at once by its submitter, the event
// loop, any number of cancellers and the closer completes exactly once.
//
// It follows Linux's fs/aio.c poll fix, which gave each request explicit
// situations: on queue (armed with the backend), stolen (completed by the
// submitter itself), pending work (woken, a work item decides), cancellable.
// It makes no system call and imports nothing of the project.
//
// # Actors
//
//   - submitter: any goroutine. Table.Acquire, fill Slot.Data, hand the
//     Handle to the loop through its queue. The handle is published (can be
//     cancelled) from Acquire on, before anything can complete it, so a
//     request is never made cancellable after it completed.
//   - loop: the one goroutine that owns the backend. Arm, Steal, Wake,
//     Requeue, Withdraw, Disarmed, Delivered and Table.Release.
//   - canceller: any goroutine, any number of times. Cancel.
//   - closer: Table.Range to find live slots, then Close on each.
//
// # State
//
// A slot's state is (generation, phase, outcome, owes, stolen). The phase is
// one of Free, Submitted, OnQueue, PendingWork, Completing, Done; the outcome
// is Undecided until one actor wins and never changes after; owes says the
// kernel still owes a completion for the tag; stolen marks a request
// completed without the kernel. A request is cancellable while it is
// Submitted, OnQueue or PendingWork and Undecided.
//
// # Table
//
// u: Undecided; a: Canceled or Closed (an abort); r: Ready or Failed (from
// the backend); d: any decided outcome; +owes: the kernel owes a completion.
// "Deliver" is MustDeliver: that caller, and no one else ever, delivers.
//
//	state              event             next                  caller now owns
//	-----------------  ----------------  --------------------  -----------------------------
//	Free               Acquire           Submitted/u           the handle (publish it)
//	Submitted/u        Arm               OnQueue/u+owes        MustArm
//	Submitted/u        Cancel, Close     Submitted/a           NothingToDo (Cancel: true)
//	Submitted/a        Arm               Completing/a stolen   MustDeliver (loop, inline)
//	OnQueue/u+owes     Steal(r)          Completing/r stolen   MustDeliver (loop, inline)
//	OnQueue/u+owes     Wake(r)           Completing/r          MustDeliver (loop)
//	OnQueue/u+owes     Wake(spurious)    PendingWork/u         MustRequeue (loop)
//	OnQueue/u+owes     Cancel, Close     OnQueue/a+owes        MustAskLoopToCancel
//	OnQueue/a+owes     Withdraw          Completing/a+owes     MustDeliver|MustCancelInKernel
//	OnQueue/a+owes     Wake(any)         Completing/a          MustDeliver (loop, as cancel)
//	OnQueue/a+owes     Disarmed          Completing/a          MustDeliver (loop, as cancel)
//	OnQueue/a+owes     Steal(r)          Completing/a stolen   MustDeliver (loop, as cancel)
//	PendingWork/u      Requeue           OnQueue/u+owes        MustArm (re-arm)
//	PendingWork/u      Cancel, Close     PendingWork/a         NothingToDo (Cancel: true)
//	PendingWork/a      Requeue           Completing/a          MustDeliver (loop, as cancel)
//	Completing/d+owes  Wake, Disarmed    Completing/d          NothingToDo
//	Completing/d       Delivered         Done/d                MustRelease
//	Completing/d+owes  Delivered         Done/d+owes           NothingToDo
//	Done/d+owes        Wake, Disarmed    Done/d                MustRelease
//	Done/d             Release           Free, generation+1    -
//	decided (any)      Cancel, Close     unchanged             NothingToDo (Cancel: d==Canceled)
//	PendingWork,       Steal             unchanged             NothingToDo (the waker finishes)
//	Completing, Done
//	not OnQueue        Withdraw          unchanged             NothingToDo
//	without owes       Wake, Disarmed    unchanged             Stale (count, ignore)
//	other generation   any but Release   unchanged             Stale (Cancel: false)
//
// Every other (state, event) pair is a reactor bug and panics with the slot,
// generation and state: Arm twice, Requeue a request not woken, Delivered
// without MustDeliver, Release while the kernel owes, Withdraw of a request
// no one aborted, Disarmed of a request no one asked to cancel.
//
// # Why exactly once
//
// MustDeliver is returned only by a CAS that moves the phase into
// Completing. Within one generation the phase moves forward only, except
// PendingWork back to OnQueue (and only while Undecided), so Completing is
// entered at most once per life; and every path out of Submitted, OnQueue
// and PendingWork that the loop takes ends there. The outcome is written
// once (Undecided to decided) and copied unchanged after, so a Cancel that
// returned true names the outcome delivered. MustRelease is returned by
// whichever of Delivered and the kernel's final report comes second,
// decided by the CAS that leaves the word Done without owes; Release bumps
// the generation, so every handle and tag of the ended life goes Stale.
package cancel
