//go:build linux

package reactor

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/oneshot-io/oneshot/cancel"
	"github.com/oneshot-io/oneshot/internal/chunked"
	"github.com/oneshot-io/oneshot/poller"
	"golang.org/x/sys/unix"
)

// loop is one event loop: a goroutine, parked in Go's netpoller between
// turns (park.go), that owns a poller, a slot table and the fds assigned
// to it.
type loop struct {
	r     *Reactor               // constant
	id    int                    // constant
	p     poller.Poller          // constant once started; owned by the loop but Wake
	rcv   poller.RingIO          // constant once started: p's receive path, or nil
	lend  lender                 // receive buffers lent to sends (loan.go)
	table *cancel.Table[reqData] // constant; transitions per cancel's rules
	in    inbox

	// inUser: atomic; the loop is running user code (enterUser), so a
	// blocking call may be its own (r.onLoop).
	inUser atomic.Bool
	goid   uint64  // constant once started: the loop goroutine's id
	pk     *parker // constant once started

	// Owned by the loop goroutine.
	spare   []cmd
	evs     []poller.Event
	timers  timerHeap
	sweepAt int64 // nanotime the sweep of its Conns' idle and read deadlines is due; 0 = none (timer.go)
	// now: the loop's clock, read where a turn begins to handle Events
	// (handle; runParked's turns without Events read it themselves) and
	// again where a turn has taken commands (turn), and nowhere else. What
	// either then handles happened before it was read (the poller's Wait
	// had returned it; a command was queued), so a Conn that stamps with
	// it the bytes it received or sent is never stamped early, and a
	// deadline counted from the stamp cannot fire before its time. Such a
	// stamp only ever moves a Conn's forward (Conn.take, stampActive,
	// outBuf.setSince): one taken from the clock itself earlier in the
	// turn, by a Write or a read, is later than now. Timers run at it too,
	// so one falling due while a turn handles Events runs at the next
	// turn, which the wait before it, bounded by that timer, begins at
	// once: late by one wake-up of the loop, never early.
	// Reading the clock once or twice a turn instead of three times a
	// message saved 9% of echod's user time at 1,000 connections.
	now      int64
	warmed   uint64 // warm's sum
	rbuf     []byte // read buffer lent to OnData/OnPacket
	accepted int    // the descriptor handOver is handing over; -1 outside it
	// refusal: the error with which the backend refused the arm act is
	// stealing as Failed (reqData.why == whyRefused). Steal in OnQueue
	// always delivers at once, so deliver reads it in the same act and
	// clears it.
	refusal error
	fds     chunked.Array[fdDesc] // by fd: its live requests (loop_fd.go)
	// served: the places of the Conns here (Conn.slot; conn_table.go):
	// [0, hiServed) were ever taken, nServed are open, and freeServed
	// heads the free ones' list (index+1; 0 = none).
	served     chunked.Array[connPlace]
	nServed    int
	hiServed   int
	freeServed uint32
	stopping   bool
	// drainedOpen counts Conns whose backed-up output drained while they
	// were open (Conn.flushed), after which each receives whole again:
	// TestPausedConnHoldsLittle tells a fresh backup from a resumed one
	// by it.
	drainedOpen uint64
	owned       []stopper // listeners and packet conns served here
	backoffs    []*lsock  // listening sockets waiting out an accept backoff (accept.go)

	// Counters: atomic, written by the loop (wakeups by producers).
	armed, ready, failed, canceled, closed, stale, rearmed atomic.Uint64
	wakeups, turns, kernel, events, maxBatch, outstanding  atomic.Uint64
	received, nobufs, recvPolled, gathered                 atomic.Uint64
	// batch: the Events of the turn being handled; Conn.Write compares
	// it with sendBatch (ringSendBatch; tests lower it to send every
	// handler call's Writes through the ring).
	batch, sendBatch atomic.Int32
	// conns: the opened Conns this loop serves (Conn.open, finish).
	conns        atomic.Int32
	timerCount   atomic.Int64 // len(timers) at the last turn
	backendArmed atomic.Int64 // the poller's Armed, less the wake eventfd
}

// connRecvLimit is what a Conn's multishot receive takes at most before it
// ends and the Conn arms the next (poller.RecvOptions.Limit, where the
// kernel has it): a peer that floods a Conn whose output backs up gets that
// much held before the Conn's pause stops the receive, not a turn's batch
// of buffers (4 MiB of the default 256 × 16 KiB). The default MaxPending:
// one arm per MiB received costs nothing measurable.
const connRecvLimit = 1 << 20

// stopper is a listener or packet conn the loop must close when it stops.
type stopper interface{ stopOnLoop() }

// run is the loop goroutine. It opens the poller and reports the result on
// started before serving. The loop is an ordinary goroutine that waits in
// Go's netpoller on the poller's descriptor (park.go), so any thread may
// enter the ring in its turn: the ring is set up COOP_TASKRUN, not
// SINGLE_ISSUER. With Config.KernelWait it waits in the kernel instead, on
// a thread of its own, the ring SINGLE_ISSUER|DEFER_TASKRUN (kernelwait.go;
// the package doc says why that mode lost until 2026-11-30, and what
// changed).
func (l *loop) run(backend poller.Backend, started chan<- openResult, done func()) {
	defer done()
	if l.r.cfg.LockLoops || l.r.cfg.KernelWait {
		// Before the poller opens: the ring's first requests are then
		// submitted from the thread that submits all the others.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	l.goid = goid()
	cfg := &l.r.cfg
	// CallerDisarms: the loop ends every request on an fd (its fd's list,
	// or a Conn's c.rd, c.wr and receive) before it makes the poller
	// forget the fd, so io_uring keeps no record per fd number on each
	// loop. Records: io_uring keeps its record of each armed tag in the
	// request's slot (reqData.pr) or, for a Conn's receive, its place
	// (connPlace.rec), not in a ledger of its own.
	opts := poller.Options{Backend: backend, Entries: uint32(cfg.Entries), Setup: poller.UringCoop, CallerDisarms: true, Records: l}
	if cfg.KernelWait {
		// Only this thread enters the ring: the kernel may then hold a
		// completion's work until the loop next waits, instead of
		// interrupting whatever the thread does.
		opts.Setup = poller.UringSingleIssuer
	}
	if cfg.IO == IOAuto {
		opts.Recv = poller.RecvOptions{Buffers: cfg.RecvBuffers, Size: cfg.RecvBufferSize, Incremental: cfg.RecvIncremental, Limit: connRecvLimit}
	}
	p, sel, err := poller.Open(opts)
	if err != nil {
		started <- openResult{sel: sel, err: err}
		return
	}
	l.p = p
	var why, io string
	l.rcv, why = poller.RingIOOf(p)
	l.setupLoans(cfg.RecvBuffers, cfg.RecvBufferSize)
	switch {
	case l.rcv == nil && cfg.IO == IOPoll:
		io = "poll (Config.IO is poll)"
	case l.rcv == nil:
		io = "poll (" + why + ")"
	case cfg.RecvIncremental && !l.rcv.Incremental():
		io = "ring (multishot RECV per loop: " + l.rcv.Layout() + "; not incremental: kernel before 6.12)"
	default:
		io = "ring (multishot RECV per loop: " + l.rcv.Layout() + ")"
	}
	if cfg.KernelWait {
		started <- openResult{sel: sel, io: io}
		l.runInKernel()
		return
	}
	pk, err := newParker(p.Fd())
	if err != nil {
		p.Close()
		started <- openResult{sel: sel, err: err}
		return
	}
	l.pk = pk
	defer pk.close()
	started <- openResult{sel: sel, io: io}
	l.runParked()
}

// turn runs the inbox's commands and the due timers; it reports whether
// the loop must stop.
func (l *loop) turn() bool {
	cmds := l.in.take(l.spare, false)
	if len(cmds) > 0 {
		l.now = nanotime() // after the take: every command came before it
	}
	for i := range cmds {
		l.exec(&cmds[i])
		cmds[i] = cmd{}
	}
	l.spare = cmds[:0]
	if len(cmds) > 0 {
		l.noteBackend() // the arms made, before the loop may sleep
	}
	l.runTimers(l.now)
	l.timerCount.Store(int64(l.timers.len() + len(l.backoffs)))
	if l.r.closing.Load() {
		l.stop()
		return true
	}
	return false
}

// runParked serves until the reactor closes. One netpoller read on the
// parker's descriptor serves turn after turn (parkedTurn): the runtime
// resets the descriptor's readiness only when such a read begins, so only
// then must a turn look before it sleeps, and every later wake-up on the
// descriptor costs one non-blocking Wait. The read ends when the deadline
// passes (a timer, or another goroutine waking the loop: see parker).
func (l *loop) runParked() {
	turn := l.parkedTurn
	for {
		if !l.pk.serve(turn) {
			return
		}
		// A deadline woke the loop: run the inbox and the due timers,
		// then set the next deadline before the descriptor is read again
		// (a deadline still past would end that read at once). Nobody
		// moves the deadline meanwhile: sleeping is false.
		l.in.sleeping.Store(false)
		l.now = nanotime() // no handle began this turn
		if l.turn() {
			return
		}
		l.pk.prepare(l.nextTimer())
	}
}

// parkedTurn is one turn of a parked loop, run by the netpoller read when
// it begins and after each wake-up on the poller's descriptor: it takes
// what the poller has, runs the inbox and the timers, and reports false
// to sleep until the descriptor polls readable or the deadline passes, or
// true once the loop stopped.
func (l *loop) parkedTurn() bool {
	l.in.sleeping.Store(false)
	for {
		n := l.wait(0)
		l.handle(n)
		if l.turn() {
			return true
		}
		if n == len(l.evs) || l.p.Queued() {
			// The poller may hold more than one buffer, or this turn
			// left what the poller's fd will not announce: requests only
			// a Wait submits (io_uring SQEs), Events a Disarm, Forget or
			// Edge arm decided on the spot (epoll).
			continue
		}
		l.leaveUser()
		l.pk.prepare(l.nextTimer()) // before sleeping is published
		l.in.sleeping.Store(true)
		if l.in.n.Load() == 0 && !l.r.closing.Load() {
			return false
		}
		l.in.sleeping.Store(false)
	}
}

// wait is the poller's Wait; it only fails on a closed or broken backend,
// which is a bug here.
func (l *loop) wait(timeout time.Duration) int {
	n, err := l.p.Wait(l.evs, timeout)
	if err != nil {
		panic("reactor: loop " + strconv.Itoa(l.id) + ": poller wait: " + err.Error())
	}
	return n
}

// handle processes the n events Wait returned.
func (l *loop) handle(n int) {
	l.now = nanotime()
	l.batch.Store(int32(n))
	l.turns.Add(1)
	l.events.Add(uint64(n))
	if uint64(n) > l.maxBatch.Load() {
		l.maxBatch.Store(uint64(n))
	}
	if n > 1 {
		l.warm(l.evs[:n])
	}
	for i := 0; i < n; i++ {
		ev := &l.evs[i]
		if ev.Tag&cancel.CallerBit != 0 {
			l.connEvent(ev) // a Conn's receive (conn_table.go)
			continue
		}
		h, ok := l.table.Lookup(ev.Tag)
		if ev.HasBuf { // Release clears it
			// Bytes a parked reader's receive brought: cancel hands them
			// over whatever the request's outcome (MustConsume, in every
			// state in which the kernel owes); the reader's p takes them
			// (its receive is delivered only after this: see withdrawal),
			// and the buffer goes back here, once.
			if ok && ev.N > 0 && h.Received().Has(cancel.MustConsume) {
				w, isW := h.Data().owner.(*waiter)
				if !isW {
					panic(fmt.Sprintf("reactor: a receive owned by %T", h.Data().owner))
				}
				w.received(l.rcv.Bytes(ev)) // a reader's (recvInto)
			}
			l.received.Add(1)
			l.rcv.Release(ev)
		}
		if ev.HasFd {
			l.handOver(h, ok, int(ev.N))
		}
		if !ok {
			l.stale.Add(1)
			continue
		}
		if ev.More {
			continue // the receive goes on
		}
		d := h.Data()
		o := cancel.Ready
		switch {
		case ev.Canceled:
			// Ours, or one the kernel ended by itself: the slot
			// decides; one nobody decided is armed again (MustRequeue).
			o = cancel.Undecided
		case ev.Errno != 0:
			o, d.errno = cancel.Failed, int32(ev.Errno)
			if w, ok := d.owner.(*waiter); ok && d.ev&evRecv != 0 {
				w.errno = ev.Errno // even if a cancel decided first
			}
		case d.ev&evSend != 0:
			d.ready = Events(ev.N)
		case d.ev&evRecv != 0 && ev.N == 0:
			d.ready = evEOF // a receive ends with 0 bytes at the peer's EOF
		default:
			d.ready = Events(ev.Events)
		}
		l.act(h, h.Wake(o))
	}
	l.noteBackend()
}

// noteBackend publishes the poller's counters for Stats.
func (l *loop) noteBackend() {
	ps := l.p.Stats()
	l.kernel.Store(ps.Syscalls)
	l.gathered.Store(ps.Gathered)
	l.backendArmed.Store(int64(ps.Armed))
}

// exec runs one command from the inbox.
func (l *loop) exec(c *cmd) {
	switch c.op {
	case opArm:
		l.act(c.h, c.h.Arm())
		// The deadline travels in the command, not the slot (every slot
		// would carry 8 bytes for it): it goes on the heap once the
		// arm is made, which linked the request to its fd's list; one
		// refused or already decided was delivered, and is not linked.
		if d := c.h.Data(); c.when != 0 && c.h.Current() && d.listed && d.timer == 0 {
			l.timers.add(timerEntry{when: c.when, ref: c.h.Tag()})
		}
	case opCancel:
		l.act(c.h, l.withdrawal(c.h))
	case opCloseFd:
		l.closeFdOn(int(c.fd))
	case opTask:
		l.enterUser() // the connection layer calls Handler methods
		c.obj.runTask(l, c.arg)
	default:
		panic("reactor: unknown command " + strconv.Itoa(int(c.op)))
	}
}

// act is the one executor: every transition a request takes on the loop,
// whoever reports it, hands its Action here, and nothing else tests
// Action bits on the loop. Asking the loop to cancel, when the loop itself
// asks, is withdrawing now.
func (l *loop) act(h reqHandle, a cancel.Action) {
	if a.Has(cancel.Stale) {
		l.stale.Add(1)
		return
	}
	if a.Has(cancel.MustAskLoopToCancel) {
		if h.Data().ev&(evRecv|evAccept) != 0 {
			// A reader's receive is not withdrawn but disarmed in the
			// kernel, and delivered when the kernel reports its end:
			// bytes it took before the cancel reached the kernel still
			// come, and come first, into the reader's p.
			// An accept likewise: what it accepted comes before its end.
			l.p.Disarm(h.Tag())
		} else {
			a |= h.Withdraw()
		}
	}
	if a.Has(cancel.MustCancelInKernel) {
		l.p.Disarm(h.Tag())
	}
	if a.Has(cancel.MustRequeue) {
		l.rearmed.Add(1)
		a |= h.Requeue()
	}
	if a.Has(cancel.MustArm) {
		d := h.Data()
		var err error
		switch {
		case d.ev&evSend != 0:
			err = l.rcv.Send(h.Tag(), int(d.fd), d.owner.(*Conn).sendable())
		case d.ev&evRecv != 0:
			// A reader's: a Conn's receive is the Conn's own (armRecv).
			err = l.rcv.RecvAtMost(h.Tag(), int(d.fd), len(d.owner.(*waiter).dst))
		case d.ev&evAccept != 0:
			err = l.rcv.Accept(h.Tag(), int(d.fd))
		default:
			err = l.p.Arm(h.Tag(), int(d.fd), uint32(d.ev))
		}
		if err != nil {
			d.why, l.refusal = whyRefused, err
			s := h.Steal(cancel.Failed)
			if !s.Has(cancel.MustDeliver) {
				// The arm was the loop's own, on a request OnQueue:
				// nothing else can have taken it, and deliver, which
				// reads l.refusal, must run now.
				panic("reactor: a refused arm was not delivered at once (" + h.State().String() + ")")
			}
			a |= s
		} else if _, conn := d.owner.(*Conn); !d.listed && !conn {
			// A Conn's requests are found through the Conn
			// (closeConnFd), not through its fd's list.
			l.link(h)
		}
	}
	if a.Has(cancel.MustDeliver) {
		l.deliver(h)
	}
	if a.Has(cancel.MustRelease) {
		if d := h.Data(); d.ev&evSend != 0 {
			if c, ok := d.owner.(*Conn); ok {
				c.sendSlotReleased()
			}
		}
		l.table.Release(h)
	}
}

// deliver completes h: the result is read from its slot, the slot is
// released if the kernel owes nothing, then the callback runs (or the Poll
// waiter is told). Nothing about h is touched after that.
func (l *loop) deliver(h reqHandle) {
	d := h.Data()
	o := h.State().Outcome()
	var res Result
	switch o {
	case cancel.Ready:
		res.Events = d.ready
		l.ready.Add(1)
	case cancel.Failed:
		res.Err = unix.Errno(d.errno)
		if err := d.why.err(l.refusal); err != nil {
			res.Err = err
		}
		l.failed.Add(1)
	case cancel.Canceled:
		res.Err = ErrCanceled
		l.canceled.Add(1)
	case cancel.Closed:
		res.Err = ErrClosed
		if err := d.why.err(l.refusal); err != nil {
			res.Err = err
		}
		l.closed.Add(1)
	default:
		panic("reactor: deliver of an undecided request (" + h.State().String() + ")")
	}
	if d.why == whyRefused {
		l.refusal = nil // read above; it is this request's alone
	}
	if d.listed {
		l.unlink(h)
	}
	if d.timer != 0 {
		l.timers.remove(int(d.timer - 1))
	}
	owner, ev, sent := d.owner, d.ev, int(d.ready)
	var cb func(Result)
	if q, ok := owner.(*Request); ok {
		// Read before the release: once its outcome is stored, q may be
		// armed again (ArmRequest), which sets a new callback.
		cb, q.cb = q.cb, nil       // q keeps no closure alive once done
		q.outcome.Store(uint32(o)) // before Delivered: Release makes Cancel see Stale
	}
	l.outstanding.Add(^uint64(0))
	// owed: delivered before the kernel's end (a cancel or the closer
	// won), so the kernel may still be at work on it: a send's chunk must
	// then not be reused until the slot is released.
	owed := !h.Delivered().Has(cancel.MustRelease)
	if !owed {
		l.table.Release(h)
	}
	switch owner := owner.(type) {
	case *Conn:
		l.enterUser()
		switch {
		case ev&evSend != 0:
			owner.sendEnded(res, sent, owed)
		case ev&Out != 0:
			owner.writable(res)
		default:
			owner.readable(res)
		}
	case *waiter:
		owner.ch <- res
	case *Request:
		l.enterUser()
		cb(res)
	case *lsock:
		l.enterUser()
		owner.acceptable(res)
	case *PacketConn:
		l.enterUser()
		owner.readable(res)
	default:
		panic(fmt.Sprintf("reactor: a request owned by %T", owner))
	}
}

// isWaiter reports whether a request's owner is a Poll's or a reader's
// waiter.
func isWaiter(owner any) bool {
	_, ok := owner.(*waiter)
	return ok
}

// armOn is the connection layer's direct path: a request made on the loop,
// with no inbox, for owner (an *lsock or a *PacketConn). *into holds its
// handle before the backend sees it; if the backend refuses the arm, the
// owner is told the error (through act, as for any request) before armOn
// returns, and clears what it owns. An error means no request was made
// (the loop is stopping, or the table is exhausted) and the owner will
// never be told.
func (l *loop) armOn(fd int, ev Events, owner any, into *reqHandle) error {
	return l.armFor(fd, ev, owner, into, nil)
}

// armConn is armOn for c's read (ev without Out) or write (ev Out)
// request: its completion calls c.readable or c.writable directly, so an
// idle Conn holds no callback closures (two allocations each). *into
// holds the request's link (Conn.rd, Conn.wr; see reqAt).
func (l *loop) armConn(c *Conn, ev Events, into *uint32) error {
	return l.armFor(int(c.fd), ev, c, nil, into)
}

// armFor makes the request; its handle goes to *into, or its link (slot
// index+1, for reqAt) to *intoLink.
func (l *loop) armFor(fd int, ev Events, owner any, into *reqHandle, intoLink *uint32) error {
	if l.stopping {
		return ErrClosed
	}
	h, err := l.table.Acquire()
	if err != nil {
		return fmt.Errorf("reactor: %w", err)
	}
	d := h.Data()
	d.fd, d.ev, d.owner = int32(fd), ev, owner
	l.armed.Add(1)
	l.outstanding.Add(1)
	if into != nil {
		*into = h
	} else {
		*intoLink = uint32(h.Index() + 1)
	}
	l.act(h, h.Arm())
	return nil
}

// cancelOn cancels h from the loop; a completion still to come is
// delivered now, as ErrCanceled.
func (l *loop) cancelOn(h reqHandle) {
	_, a := h.Cancel()
	l.act(h, a)
}

// postTask hands obj's task to this loop; false once the loop stopped.
func (l *loop) postTask(obj task, arg int32) bool {
	return l.post(cmd{op: opTask, obj: obj, arg: arg})
}

func (l *loop) post(c cmd) bool {
	wake, ok := l.in.push(c)
	if wake {
		l.wake()
	}
	return ok
}

// wake makes the loop's park end (see parker). Safe from any goroutine;
// TestWakeHammered checks that no wake-up is lost.
func (l *loop) wake() {
	l.wakeups.Add(1)
	if l.pk == nil {
		// A KernelWait loop: the poller's eventfd ends its wait (or the
		// next one, at once).
		if err := l.p.Wake(); err != nil && !errors.Is(err, poller.ErrClosed) {
			panic("reactor: loop " + strconv.Itoa(l.id) + ": wake: " + err.Error())
		}
		return
	}
	l.pk.unpark()
}

func (l *loop) own(s stopper) { l.owned = append(l.owned, s) }

func (l *loop) disown(s stopper) {
	for i, o := range l.owned {
		if o == s {
			l.owned = append(l.owned[:i], l.owned[i+1:]...)
			return
		}
	}
}
