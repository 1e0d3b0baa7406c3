package cancel_test

import (
	"fmt"
	"slices"

	"github.com/oneshot-io/oneshot/cancel"
)

// This file is a small world in which the actors of a reactor drive real
// cancel.Handles: submitters, the loop (one goroutine: it finishes the task
// it is in before picking new work), a fake kernel, cancellers and a closer.
// Every step of an actor is one call into the package (one CAS), so a run is
// a sequence of atomic steps and a chooser picks which enabled step comes
// next. The exhaustive test enumerates every chooser; the fuzz target
// decodes one from bytes. After every step the world checks the invariants
// of DESIGN.md §2 against what the fake kernel really holds.

// armScript is what the backend does with one arm of a request.
type armScript struct {
	refuse        bool           // the arm fails synchronously: Steal(Failed)
	readyAtSubmit bool           // readiness seen at submit, nothing armed: Steal(Ready)
	fire          cancel.Outcome // the kernel's completion: Ready, Failed, or Undecided (spurious)
	never         bool           // the kernel never completes unless cancelled
	// data: reports carrying bytes the kernel may post before the arm's
	// last one (a multishot receive's completions with more to follow),
	// at any moment while the arm is live, its cancel requested or not.
	data int
}

type scenario struct {
	name       string
	epoll      bool          // kernel cancel is a synchronous DEL (else async POLL_REMOVE)
	reqs       [][]armScript // per request, what each successive arm does
	cancellers []int         // the request each canceller targets
	closer     bool
	// deliverFirst: after Withdraw the loop delivers before it cancels in
	// the kernel (a reactor may do either; both orders must hold).
	deliverFirst bool
}

// life is one request's record in the world.
type life struct {
	h           handle
	created     bool
	rejected    bool // the closer ran first: Arm would have returned ErrClosed
	arms        int
	decided     cancel.Outcome
	decider     step
	mustDeliver int
	delivered   []cancel.Outcome
	released    bool
	canceledOK  int // Cancels that returned true
	canceledNo  int // Cancels that returned false and not Stale
	dataPosted  int // reports with bytes the kernel posted
	consumed    int // of those, the ones Received said to hand over
}

type cqe struct {
	tag  uint64
	kind cancel.Outcome
	req  int
	data bool // bytes, with more to follow: not the arm's last report
}

type armed struct {
	tag             uint64
	req             int
	script          armScript
	cancelRequested bool
	dataLeft        int
}

type msg struct {
	h   handle
	req int
}

// step is one atomic step some actor may take next.
type step struct {
	kind stepKind
	i    int    // the submitter's or canceller's number
	a    *armed // the kernel's arm, for kernel steps
}

type stepKind uint8

const (
	stSubmit stepKind = iota
	stLoopTask
	stDequeue
	stWithdraw
	stReap
	stFire
	stKernelCanceled
	stData
	stCancel
	stClose
)

func (s step) String() string {
	switch s.kind {
	case stSubmit:
		return fmt.Sprintf("submitter%d", s.i)
	case stLoopTask:
		return "loop:task"
	case stDequeue:
		return "loop:dequeue"
	case stWithdraw:
		return "loop:withdraw"
	case stReap:
		return "loop:reap"
	case stFire:
		return "kernel:fire"
	case stKernelCanceled:
		return "kernel:canceled"
	case stData:
		return "kernel:data"
	case stCancel:
		return fmt.Sprintf("canceller%d", s.i)
	default:
		return "closer"
	}
}

// loopTask is a step of the task the loop is in the middle of.
type loopTask struct {
	kind taskKind
	r    int
}

type taskKind uint8

const (
	tArm taskKind = iota
	tRequeue
	tKernelCancel
	tDeliver
)

type world struct {
	sc    *scenario
	tb    *cancel.Table[payload]
	reqs  []*life
	byTag map[uint64]int

	submitQ []int
	cancelQ []msg
	cq      []cqe
	armed   []*armed        // the kernel's live arms, in arm order
	owed    map[uint64]bool // tags the kernel may still post (or posted, unreaped, on io_uring)
	loop    []loopTask      // the loop's current task, step by step
	buf     []step          // enabled's result, reused

	submitted  []bool
	cancelDone []bool
	closerDone bool
	closed     bool

	actor step // who is taking the current step
	err   error
	steps int
	cov   coverage
}

func newWorld(sc *scenario) *world {
	w := &world{
		sc:         sc,
		tb:         cancel.NewTable[payload](1),
		byTag:      map[uint64]int{},
		owed:       map[uint64]bool{},
		submitted:  make([]bool, len(sc.reqs)),
		cancelDone: make([]bool, len(sc.cancellers)),
	}
	for range sc.reqs {
		w.reqs = append(w.reqs, &life{})
	}
	return w
}

func (w *world) fail(format string, args ...any) {
	if w.err == nil {
		w.err = fmt.Errorf("step %d (%v): %s", w.steps, w.actor, fmt.Sprintf(format, args...))
	}
}

// enabled lists the steps that may run next, in a fixed order.
func (w *world) enabled() []step {
	ts := w.buf[:0]
	for r := range w.sc.reqs {
		if !w.submitted[r] {
			ts = append(ts, step{kind: stSubmit, i: r})
		}
	}
	if len(w.loop) > 0 {
		ts = append(ts, step{kind: stLoopTask})
	} else {
		if len(w.submitQ) > 0 {
			ts = append(ts, step{kind: stDequeue})
		}
		if len(w.cancelQ) > 0 {
			ts = append(ts, step{kind: stWithdraw})
		}
		if len(w.cq) > 0 {
			ts = append(ts, step{kind: stReap})
		}
	}
	for _, a := range w.armed {
		if !a.script.never {
			ts = append(ts, step{kind: stFire, a: a})
		}
		if a.cancelRequested {
			ts = append(ts, step{kind: stKernelCanceled, a: a})
		}
		if a.dataLeft > 0 {
			ts = append(ts, step{kind: stData, a: a})
		}
	}
	for c, r := range w.sc.cancellers {
		if !w.cancelDone[c] && w.reqs[r].created {
			ts = append(ts, step{kind: stCancel, i: c})
		}
	}
	if w.sc.closer && !w.closerDone {
		ts = append(ts, step{kind: stClose})
	}
	w.buf = ts
	return ts
}

func (w *world) do(s step) {
	switch s.kind {
	case stSubmit:
		w.submit(s.i)
	case stLoopTask:
		t := w.loop[0]
		w.loop = w.loop[1:]
		switch t.kind {
		case tArm:
			w.backendArm(t.r)
		case tRequeue:
			w.act(t.r, w.reqs[t.r].h.Requeue(), "Requeue")
		case tKernelCancel:
			w.kernelCancel(t.r)
		case tDeliver:
			w.deliver(t.r)
		}
	case stDequeue:
		w.dequeue()
	case stWithdraw:
		w.withdraw()
	case stReap:
		w.reap()
	case stFire:
		w.post(s.a, s.a.script.fire)
	case stKernelCanceled:
		w.post(s.a, cancel.Failed)
	case stData:
		s.a.dataLeft--
		w.reqs[s.a.req].dataPosted++
		w.cq = append(w.cq, cqe{s.a.tag, cancel.Ready, s.a.req, true})
	case stCancel:
		w.cancel(s.i, w.sc.cancellers[s.i])
	case stClose:
		w.close()
	}
}

// run plays one schedule to the end and returns the first violation.
func (w *world) run(choose func(n int) int) error {
	for w.err == nil {
		ts := w.enabled()
		if len(ts) == 0 {
			break
		}
		if w.steps++; w.steps > 200 {
			w.fail("no end after 200 steps")
			break
		}
		t := ts[choose(len(ts))]
		w.actor = t
		w.do(t)
		w.checkStep()
	}
	if w.err == nil {
		w.checkEnd()
	}
	return w.err
}

func (w *world) submit(r int) {
	w.submitted[r] = true
	l := w.reqs[r]
	if w.closed {
		l.rejected = true
		return
	}
	h, err := w.tb.Acquire()
	if err != nil {
		w.fail("Acquire: %v", err)
		return
	}
	for tag := range w.owed {
		if tag&(1<<24-1) == uint64(h.Index()+1) {
			w.fail("slot %d reused while the kernel may still post tag %#x", h.Index(), tag)
		}
	}
	for _, o := range w.reqs {
		if o.created && o.h.Index() == h.Index() {
			w.cov.reused++
		}
	}
	l.h, l.created = h, true
	w.byTag[h.Tag()] = r
	w.submitQ = append(w.submitQ, r)
}

func (w *world) dequeue() {
	r := w.submitQ[0]
	w.submitQ = w.submitQ[1:]
	w.act(r, w.reqs[r].h.Arm(), "Arm")
}

func (w *world) withdraw() {
	m := w.cancelQ[0]
	w.cancelQ = w.cancelQ[1:]
	a := m.h.Withdraw()
	if a == cancel.Stale && !w.reqs[m.req].released {
		w.fail("Withdraw reported Stale for a request not yet released")
	}
	w.act(m.req, a, "Withdraw")
}

func (w *world) reap() {
	c := w.cq[0]
	w.cq = w.cq[1:]
	owed := w.owed[c.tag]
	delete(w.owed, c.tag)
	h, ok := w.tb.Lookup(c.tag)
	if !ok {
		if owed {
			w.fail("Lookup refused tag %#x the kernel owed", c.tag)
		}
		w.cov.staleLookup++
		return
	}
	if c.data {
		// Not the last report: the kernel still owes that one, so the
		// bytes must be handed over, whatever was decided meanwhile.
		w.owed[c.tag] = owed
		if a := h.Received(); a != cancel.MustConsume {
			w.fail("Received on tag %#x (owed=%v, %v) returned %v: bytes the kernel took dropped", c.tag, owed, h.State(), a)
		}
		w.reqs[c.req].consumed++
		w.cov.consumed++
		return
	}
	a := h.Wake(c.kind)
	if owed == (a == cancel.Stale) {
		w.fail("Wake(%v) on tag %#x owed=%v returned %v", c.kind, c.tag, owed, a)
	}
	if a == cancel.Stale {
		w.cov.staleWake++
	}
	w.act(c.req, a, "Wake")
}

func (w *world) post(a *armed, kind cancel.Outcome) {
	w.armed = slices.DeleteFunc(w.armed, func(x *armed) bool { return x == a })
	w.cq = append(w.cq, cqe{a.tag, kind, a.req, false})
}

// backendArm is the loop's arm call after MustArm.
func (w *world) backendArm(r int) {
	l := w.reqs[r]
	if l.arms >= len(w.sc.reqs[r]) {
		w.fail("request %d armed %d times; its script has %d arms", r, l.arms+1, len(w.sc.reqs[r]))
		return
	}
	s := w.sc.reqs[r][l.arms]
	l.arms++
	switch {
	case s.refuse:
		w.act(r, l.h.Steal(cancel.Failed), "Steal")
	case s.readyAtSubmit:
		w.act(r, l.h.Steal(cancel.Ready), "Steal")
	default:
		if s.data > 0 && w.sc.epoll {
			w.fail("scenario %q: epoll posts no bytes", w.sc.name)
		}
		w.armed = append(w.armed, &armed{tag: l.h.Tag(), req: r, script: s, dataLeft: s.data})
		w.owed[l.h.Tag()] = true
	}
}

// kernelCancel is the loop's cancel call after MustCancelInKernel.
func (w *world) kernelCancel(r int) {
	h := w.reqs[r].h
	i := slices.IndexFunc(w.armed, func(a *armed) bool { return a.tag == h.Tag() })
	if !w.sc.epoll {
		if i >= 0 {
			w.armed[i].cancelRequested = true // the kernel posts -ECANCELED later
		}
		return
	}
	// epoll_ctl DEL: the arm is gone at once; an event already harvested
	// stays in the batch and must be recognised as stale when reaped.
	if i >= 0 {
		w.armed = slices.Delete(w.armed, i, i+1)
	}
	owed := w.owed[h.Tag()]
	delete(w.owed, h.Tag())
	a := h.Disarmed()
	if owed == (a == cancel.Stale) {
		w.fail("Disarmed with owed=%v returned %v", owed, a)
	}
	w.act(r, a, "Disarmed")
}

func (w *world) deliver(r int) {
	l := w.reqs[r]
	st := l.h.State()
	l.delivered = append(l.delivered, st.Outcome())
	w.cov.outcomes[st.Outcome()]++
	if st.Stolen() {
		w.cov.stolen++
	}
	w.act(r, l.h.Delivered(), "Delivered")
}

// act queues the loop's obligations in the order a reactor would meet them.
func (w *world) act(r int, a cancel.Action, op string) {
	l := w.reqs[r]
	if a.Has(cancel.MustAskLoopToCancel) {
		w.fail("%s returned %v to the loop", op, a)
	}
	// What each obligation says about the word, checked at once (the step
	// is atomic, so nothing ran in between).
	if st := l.h.State(); l.h.Current() {
		p, o := st.Phase(), st.Outcome()
		switch {
		case a.Has(cancel.MustArm) && (p != cancel.OnQueue || o != cancel.Undecided):
			w.fail("%s returned MustArm leaving %v", op, st)
		case a.Has(cancel.MustRequeue) && (p != cancel.PendingWork || o != cancel.Undecided):
			w.fail("%s returned MustRequeue leaving %v", op, st)
		case a.Has(cancel.MustDeliver) && p != cancel.Completing:
			w.fail("%s returned MustDeliver leaving %v", op, st)
		case a.Has(cancel.MustRelease) && (p != cancel.Done || st.Owes()):
			w.fail("%s returned MustRelease leaving %v", op, st)
		}
	}
	if a.Has(cancel.MustArm) {
		w.loop = append(w.loop, loopTask{tArm, r})
	}
	if a.Has(cancel.MustRequeue) {
		w.loop = append(w.loop, loopTask{tRequeue, r})
	}
	kernelCancel := a.Has(cancel.MustCancelInKernel)
	if kernelCancel && !w.sc.deliverFirst {
		w.loop = append(w.loop, loopTask{tKernelCancel, r})
	}
	if a.Has(cancel.MustDeliver) {
		l.mustDeliver++
		if l.mustDeliver > 1 {
			w.fail("request %d told MustDeliver twice (second by %s)", r, op)
		}
		w.loop = append(w.loop, loopTask{tDeliver, r})
	}
	if kernelCancel && w.sc.deliverFirst {
		w.loop = append(w.loop, loopTask{tKernelCancel, r})
	}
	if a.Has(cancel.MustRelease) {
		if l.released {
			w.fail("request %d told MustRelease twice", r)
			return
		}
		if w.owed[l.h.Tag()] {
			w.fail("request %d told MustRelease while the kernel owes its tag", r)
		}
		w.tb.Release(l.h)
		l.released = true
	}
}

func (w *world) cancel(c, r int) {
	w.cancelDone[c] = true
	l := w.reqs[r]
	cur := l.h.Current()
	before := l.h.State()
	ok, a := l.h.Cancel()
	switch {
	case !cur:
		if a != cancel.Stale || ok || !l.released {
			w.fail("Cancel of a recycled life = %v, %v (released=%v)", ok, a, l.released)
		}
		w.cov.staleCancel++
		return
	case before.Outcome() != cancel.Undecided:
		if ok != (before.Outcome() == cancel.Canceled) || a != cancel.NothingToDo || l.h.State() != before {
			w.fail("Cancel after %v decided = %v, %v, state %v", before.Outcome(), ok, a, l.h.State())
		}
	case !ok:
		w.fail("Cancel of an undecided request (%v) returned false", before)
	}
	if ok {
		l.canceledOK++
	} else {
		l.canceledNo++
	}
	if a == cancel.MustAskLoopToCancel {
		w.cancelQ = append(w.cancelQ, msg{l.h, r})
	}
}

func (w *world) close() {
	w.closerDone, w.closed = true, true
	w.tb.Range(func(h handle, st cancel.State) bool {
		r, ok := w.byTag[h.Tag()]
		if !ok {
			w.fail("Range found a slot no submitter acquired: %v", st)
			return false
		}
		if a := h.Close(); a == cancel.MustAskLoopToCancel {
			w.cancelQ = append(w.cancelQ, msg{h, r})
		}
		return true
	})
}
