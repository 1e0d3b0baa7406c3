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
// A state is written Phase/outcome[+owes]: u is Undecided; a is Canceled or
// Closed (an abort); r is Ready or Failed (from the backend); d is any
// decided outcome; +owes means the kernel owes a completion for the tag (its
// absence in "next" means the transition clears it). A decided outcome never
// changes; an undecided one takes the event's (Cancel: Canceled, Close:
// Closed, Wake(r) and Steal(r): r). "stolen" in "next" sets the stolen flag,
// which otherwise stays as it was. MustDeliver goes to that caller and no
// one else, ever. TestReferenceModel parses both tables below and checks
// the code against them.
//
//	state              event                               next                 caller now owns
//	-----------------  ----------------------------------  -------------------  ------------------------------
//	Free               Acquire                             Submitted/u          - (the handle: publish it)
//	Submitted/u        Arm                                 OnQueue/u+owes       MustArm
//	Submitted/u        Cancel, Close                       Submitted/a          NothingToDo (the loop steals)
//	Submitted/a        Arm                                 Completing/a stolen  MustDeliver (inline, never armed)
//	OnQueue/u+owes     Steal(r)                            Completing/r stolen  MustDeliver (inline)
//	OnQueue/u+owes     Wake(r)                             Completing/r         MustDeliver
//	OnQueue/u+owes     Wake(spurious)                      PendingWork/u        MustRequeue
//	OnQueue/u+owes     Cancel, Close                       OnQueue/a+owes       MustAskLoopToCancel
//	OnQueue/a+owes     Withdraw                            Completing/a+owes    MustDeliver|MustCancelInKernel
//	OnQueue/a+owes     Wake(r), Wake(spurious), Disarmed   Completing/a         MustDeliver (as the abort)
//	OnQueue/a+owes     Steal(r)                            Completing/a stolen  MustDeliver (as the abort)
//	PendingWork/u      Requeue                             OnQueue/u+owes       MustArm (re-arm)
//	PendingWork/u      Cancel, Close                       PendingWork/a        NothingToDo (the loop holds it)
//	PendingWork/a      Requeue                             Completing/a         MustDeliver (as the abort)
//	Completing/d+owes  Wake(r), Wake(spurious), Disarmed   Completing/d         NothingToDo
//	Completing/d       Delivered                           Done/d               MustRelease
//	Completing/d+owes  Delivered                           Done/d+owes          NothingToDo
//	Done/d+owes        Wake(r), Wake(spurious), Disarmed   Done/d               MustRelease
//	Done/d             Release                             Free                 - (generation+1)
//
// Events that change nothing (Cancel there reports whether d is Canceled):
//
//	event                               result       in states
//	----------------------------------  -----------  -------------------------------------------------
//	Cancel, Close                       NothingToDo  Submitted/a OnQueue/a+owes PendingWork/a
//	                                                 Completing/d Completing/d+owes Done/d Done/d+owes
//	Steal(r)                            NothingToDo  PendingWork/u PendingWork/a (the waker finishes)
//	                                                 Completing/d Completing/d+owes Done/d Done/d+owes
//	Withdraw                            NothingToDo  Submitted/u Submitted/a PendingWork/u PendingWork/a
//	                                                 Completing/d Completing/d+owes Done/d Done/d+owes
//	Wake(r), Wake(spurious), Disarmed   Stale        Submitted/u Submitted/a PendingWork/u PendingWork/a
//	                                                 Completing/d Done/d (the kernel owed nothing)
//	Received                            MustConsume  OnQueue/u+owes OnQueue/a+owes Completing/d+owes
//	                                                 Done/d+owes (bytes the kernel took, whatever the outcome)
//	Received                            Stale        Submitted/u Submitted/a PendingWork/u PendingWork/a
//	                                                 Completing/d Done/d (the kernel owed nothing)
//
// Through a handle of an earlier life (its generation no longer matches),
// Cancel, Close, Steal, Wake, Disarmed, Withdraw and Received change nothing
// and return Stale (Cancel reports false), while Arm, Requeue, Delivered and Release
// panic: the loop holds the request when it makes those calls, so it cannot
// have been recycled.
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
