//go:build linux

package reactor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oneshot-io/oneshot/cancel"
	"github.com/oneshot-io/oneshot/poller"
	"golang.org/x/sys/unix"
)

// errDeadline is the result of a request whose deadline passed first.
var errDeadline = os.ErrDeadlineExceeded

// The Events constants (types.go) are poll(2)'s bits; this fails to build
// if one of them differs from the kernel's.
var _ = [1]struct{}{}[In^unix.POLLIN|Pri^unix.POLLPRI|Out^unix.POLLOUT|Err^unix.POLLERR|Hup^unix.POLLHUP|RdHup^unix.POLLRDHUP]

// readBufSize is the loop's read buffer, lent to OnData: one read's most.
const readBufSize = 64 << 10

// armMask holds every bit Arm accepts.
const armMask = In | Pri | Out | Err | Hup | RdHup

// Reactor is a set of event loops serving one-shot poll requests. Its
// methods are safe from any goroutine.
type Reactor struct {
	cfg     Config  // constant after New
	loops   []*loop // constant after New
	backend Backend // constant after New
	reason  string  // constant after New
	io      string  // constant after New: IOPath
	maxFd   int     // constant after New: poller.FdLimit, as New found it

	closing atomic.Bool // Close began: loops stop at their next turn
	closed  atomic.Bool // Close began: new requests are refused

	wg        sync.WaitGroup // the loop goroutines
	closeOnce sync.Once
	waiters   sync.Pool // *waiter, for Poll
	pipes     pipePool  // for NetConn.ReadFrom's splice(2)
}

type openResult struct {
	sel poller.Selection
	io  string // the I/O path (Reactor.IOPath)
	err error
}

// New starts cfg.Loops event loops on the backend cfg asks for. Asking for
// BackendUring where io_uring is unavailable returns an error wrapping
// ErrUnavailable that says why; BackendAuto falls back to epoll and
// BackendReason says why.
func New(cfg Config) (*Reactor, error) {
	cfg = cfg.withDefaults(runtime.GOMAXPROCS(0))
	var want poller.Backend
	if n := cfg.RecvBuffers; n > 1<<15 || n&(n-1) != 0 {
		return nil, fmt.Errorf("reactor: RecvBuffers %d: want a power of two up to 32768", n)
	}
	if cfg.RecvBufferSize > 1<<30 {
		return nil, fmt.Errorf("reactor: RecvBufferSize %d: at most 1 GiB", cfg.RecvBufferSize)
	}
	switch cfg.IO {
	case IOAuto, IOPoll:
	default:
		return nil, fmt.Errorf("reactor: unknown I/O mode %q (want %q or %q)", cfg.IO, IOAuto, IOPoll)
	}
	switch cfg.Backend {
	case BackendAuto:
		want = poller.Auto
	case BackendUring:
		want = poller.Uring
	case BackendEpoll:
		want = poller.Epoll
	default:
		return nil, fmt.Errorf("reactor: unknown backend %q (want auto, uring or epoll)", cfg.Backend)
	}
	r := &Reactor{cfg: cfg, maxFd: poller.FdLimit()}
	r.waiters.New = func() any { return &waiter{ch: make(chan Result, 1)} }
	for i := 0; i < cfg.Loops; i++ {
		l := &loop{r: r, id: i, table: cancel.NewTable[reqData](256),
			evs: make([]poller.Event, cfg.EventBatch), rbuf: make([]byte, readBufSize)}
		l.timers.table = l.table
		l.timers.conns = &l.served
		l.accepted = -1
		l.sendBatch.Store(ringSendBatch)
		r.loops = append(r.loops, l)
	}
	// The first loop resolves auto; the others open what it got, so every
	// loop runs the same backend.
	var first string // the first loop's I/O path
	for i, l := range r.loops {
		started := make(chan openResult, 1)
		r.wg.Add(1)
		go l.run(want, started, r.wg.Done)
		res := <-started
		if res.err != nil {
			r.closing.Store(true)
			r.closed.Store(true)
			for _, o := range r.loops[:i] {
				o.wake()
			}
			r.wg.Wait()
			if want == poller.Uring {
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, res.err)
			}
			return nil, fmt.Errorf("reactor: starting loop %d: %w", i, res.err)
		}
		switch {
		case i == 0:
			r.backend, r.reason, r.io = Backend(res.sel.Backend), res.sel.Reason, res.io
			want, first = res.sel.Backend, res.io
		case res.io != first && r.io == first:
			// Receive buffers one loop's kernel memory refused leave that
			// loop on polls (poller.Options.Recv): said, not hidden.
			r.io += fmt.Sprintf("; loop %d: %s", i, res.io)
		}
	}
	cfg.Logger.Info("reactor started", zapString("backend", string(r.backend)),
		zapString("reason", r.reason), zapString("io", r.io), zapInt("loops", cfg.Loops))
	return r, nil
}

// IOPath says how Conns move bytes: "ring (...)" through io_uring
// (multishot RECV), or "poll (why)" after readiness polls with read(2)
// and write(2). Should a loop not get what the first got (receive
// buffers its memory refused), "; loop N: poll (why)" follows, for the
// first such loop.
func (r *Reactor) IOPath() string { return r.io }

// Backend reports the backend in use: BackendUring or BackendEpoll.
func (r *Reactor) Backend() Backend { return r.backend }

// BackendReason says why that backend is in use; after a fallback, why
// io_uring was not.
func (r *Reactor) BackendReason() string { return r.reason }

// Loops returns the number of event loops.
func (r *Reactor) Loops() int { return len(r.loops) }

// loopFor returns the loop that owns fd: fds are spread by number, so an fd
// stays on one loop for its whole life and a reused number lands on the same
// loop as its previous owner.
func (r *Reactor) loopFor(fd int) *loop { return r.loops[fd%len(r.loops)] }

// onLoop reports whether the caller is a loop running user code. A loop
// flags the time it runs user code (a turn's callbacks, Handler methods);
// only while some loop is flagged does the caller's goroutine id get
// compared with the loop's, and only then is it computed. (The loops used
// to record their OS thread's id, pinned, each turn: a gettid(2) a
// message, a quarter of echod's system calls at 1,000 connections.)
func (r *Reactor) onLoop() bool {
	var g uint64
	for _, l := range r.loops {
		if !l.inUser.Load() {
			continue
		}
		if g == 0 {
			g = goid()
		}
		if l.goid == g {
			return true
		}
	}
	return false
}

// goid returns the calling goroutine's id, read from the header of its
// stack trace ("goroutine 42 [running]:"). Go offers no cheaper way, and
// none is needed: onLoop asks only while a loop runs user code.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b, ok := bytes.CutPrefix(b, []byte("goroutine "))
	if !ok {
		panic("reactor: unexpected stack header " + strconv.Quote(string(b)))
	}
	var id uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}

// Request is one armed poll, returned by Arm. Its methods are safe from any
// goroutine.
type Request struct {
	l       *loop
	h       reqHandle
	outcome atomic.Uint32 // cancel.Outcome, stored by the loop before the slot is released
	cb      func(Result)  // set by arm before the push publishes it; read by the loop
}

// Arm arms a one-shot poll for ev on fd. cb runs exactly once, on the loop
// that owns fd, with the ready events, ErrCanceled, ErrClosed, ErrFdClosed or
// the kernel's error; it must not block. It may run before Arm returns.
// A panic in cb is not recovered: it ends the process, as a panic in any
// goroutine does, because the loop cannot know what state cb left behind.
// Arm returns an error, and cb never runs, when the arguments are invalid or
// the reactor is closed.
func (r *Reactor) Arm(fd int, ev Events, cb func(Result)) (*Request, error) {
	q := new(Request)
	if err := r.ArmRequest(q, fd, ev, cb); err != nil {
		return nil, err
	}
	return q, nil
}

// ArmRequest is Arm into a Request the caller owns, so that a server can
// recycle Requests and arm without allocating. q must not be in flight: its
// previous request, if any, has completed.
func (r *Reactor) ArmRequest(q *Request, fd int, ev Events, cb func(Result)) error {
	return r.arm(q, fd, ev, cb, 0)
}

// ArmDeadline is Arm with a deadline: if nothing else completed the request
// by then, it completes with os.ErrDeadlineExceeded (and Cancel returns
// false for it: the deadline, not Cancel, decided). A deadline more than a
// century away acts as one a century away.
func (r *Reactor) ArmDeadline(fd int, ev Events, deadline time.Time, cb func(Result)) (*Request, error) {
	q := new(Request)
	d := nanoAfter(nanotime(), time.Until(deadline))
	if d <= 0 {
		d = 1
	}
	if err := r.arm(q, fd, ev, cb, d); err != nil {
		return nil, err
	}
	return q, nil
}

func (r *Reactor) arm(q *Request, fd int, ev Events, cb func(Result), deadline int64) error {
	if cb == nil {
		return errors.New("reactor: Arm with a nil callback")
	}
	l, err := r.check(fd, ev)
	if err != nil {
		return err
	}
	q.l = l
	q.cb = cb
	q.outcome.Store(0)
	// submit sets q.h before the push publishes the request; nothing may
	// write q after that: its callback, which may hold q, can already run.
	_, err = l.submit(fd, ev, q, deadline)
	return err
}

// checkFd refuses a number no descriptor can have: negative, or at or past
// poller.FdLimit and not open (poller.FdOpen). The loops keep fds in 32
// bits, and tables by fd number, which a number that large would grow for
// nothing: 4 bytes a number.
func (r *Reactor) checkFd(fd int) error {
	if fd < 0 || fd > math.MaxInt32 || fd >= r.maxFd && !poller.FdOpen(fd) {
		return fmt.Errorf("reactor: fd %d out of range (at or past RLIMIT_NOFILE %d, and not open)", fd, r.maxFd)
	}
	return nil
}

func (r *Reactor) check(fd int, ev Events) (*loop, error) {
	if err := r.checkFd(fd); err != nil {
		return nil, err
	}
	switch {
	case ev&^armMask != 0 || ev == 0:
		return nil, fmt.Errorf("reactor: events %v outside In|Pri|Out|RdHup|Err|Hup", ev)
	}
	return r.loopFor(fd), nil
}

// submit hands a new request to l from any goroutine.
func (l *loop) submit(fd int, ev Events, owner any, deadline int64) (reqHandle, error) {
	if l.r.closed.Load() {
		return reqHandle{}, ErrClosed
	}
	h, err := l.table.Acquire()
	if err != nil {
		return reqHandle{}, fmt.Errorf("reactor: %w", err)
	}
	d := h.Data()
	d.fd, d.ev, d.owner = int32(fd), ev, owner
	if q, ok := owner.(*Request); ok {
		q.h = h // before the push: the callback may run before we return
	}
	l.outstanding.Add(1)
	if !l.post(cmd{op: opArm, h: h, when: deadline}) {
		// The loop took its last batch: this request was never accepted.
		// No one else has the handle, so retire it here without a delivery.
		l.outstanding.Add(^uint64(0))
		h.Close()
		if h.Arm().Has(cancel.MustDeliver) && h.Delivered().Has(cancel.MustRelease) {
			l.table.Release(h)
		}
		return reqHandle{}, ErrClosed
	}
	// Counted once accepted, never taken back: a counter that went down
	// while a refused arm was undone read as a reset to Prometheus.
	l.armed.Add(1)
	return h, nil
}

// Cancel asks for q to complete with ErrCanceled. It is safe from any
// goroutine, any number of times, before or after completion and after the
// reactor closed, and reports whether q's one completion is (or will be)
// ErrCanceled.
func (q *Request) Cancel() bool {
	if q == nil || q.h.IsZero() {
		return false
	}
	won, a := q.l.cancelOff(q.h)
	if a == cancel.Stale {
		// The slot moved on: q was delivered; the loop stored its outcome.
		return cancel.Outcome(q.outcome.Load()) == cancel.Canceled
	}
	return won
}

// cancelOff is Cancel made by a goroutine that is not the loop: an armed
// request's withdrawal is the loop's to make (act, on opCancel), so it is
// posted there; if the inbox is closed, the stopping loop withdraws it
// itself. The loop's own cancels go straight to act (cancelOn).
func (l *loop) cancelOff(h reqHandle) (bool, cancel.Action) {
	won, a := h.Cancel()
	if a.Has(cancel.MustAskLoopToCancel) {
		l.post(cmd{op: opCancel, h: h})
	}
	return won, a
}

// waiter is a Poll's completion channel, pooled; a reader's receive
// through the ring (recvInto) also has the loop copy its bytes into dst,
// counting them in n, and note the kernel's error, before the completion
// is sent.
type waiter struct {
	ch    chan Result
	dst   []byte
	n     int
	errno unix.Errno // the error the kernel ended a reader's receive with
}

// Poll waits for ev on fd and returns the ready events. When ctx ends first
// the request is canceled and Poll returns ctx.Err(); when the request
// completed first its result is returned: exactly one of the two, never a
// lost wakeup. After Close it returns ErrClosed. Called from a loop
// callback it returns ErrOnLoop: it would block the loop, and forever when
// fd belongs to that loop.
func (r *Reactor) Poll(ctx context.Context, fd int, ev Events) (Events, error) {
	return r.poll(ctx, fd, ev, 0)
}

// poll is Poll with request bits the API does not offer: evEdge, for a
// caller that keeps its promise (NetConn's waits after EAGAIN).
func (r *Reactor) poll(ctx context.Context, fd int, ev, extra Events) (Events, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if r.onLoop() {
		return 0, ErrOnLoop
	}
	l, err := r.check(fd, ev)
	if err != nil {
		return 0, err
	}
	w := r.waiters.Get().(*waiter)
	h, err := l.submit(fd, ev|extra, w, 0)
	if err != nil {
		r.waiters.Put(w)
		return 0, err
	}
	var res Result
	select {
	case res = <-w.ch:
	case <-ctx.Done():
		won, _ := l.cancelOff(h)
		res = <-w.ch // the one completion, whoever decided it
		if won {
			r.waiters.Put(w)
			return 0, ctx.Err()
		}
	}
	r.waiters.Put(w)
	return res.Events, res.Err
}

// CloseFd closes fd on its loop after completing the requests armed on it
// (with ErrFdClosed, unless they already had a result), and once the
// kernel has ended them, so that the close releases the file as close(2)
// alone would (a listening socket stops listening; an io_uring poll holds
// its file until it ends). It returns before the loop acts; the caller
// must not use fd afterwards. An error means fd was not closed (after
// Close, ErrClosed): the caller still owns it.
func (r *Reactor) CloseFd(fd int) error { return r.closeFd(fd, nil) }

// closeFd is CloseFd; with done, the loop closes done once fd is closed
// (closePolledWait waits for it).
func (r *Reactor) closeFd(fd int, done chan struct{}) error {
	if err := r.checkFd(fd); err != nil {
		return err
	}
	if r.closed.Load() {
		return ErrClosed
	}
	c := cmd{op: opCloseFd, fd: int32(fd)}
	if done != nil {
		c = cmd{op: opTask, obj: fdCloser{fd: fd, done: done}}
	}
	if !r.loopFor(fd).post(c) {
		return ErrClosed
	}
	return nil
}

// Close completes every outstanding request with ErrClosed (or the result
// that already won), closes every listener and connection, waits until the
// kernel has posted every completion it owes, releases the pollers and ends
// the loop goroutines (and closes the pipes NetConn.ReadFrom keeps). It is
// idempotent; called from a loop callback it
// returns ErrOnLoop.
func (r *Reactor) Close() error {
	if r.onLoop() {
		return ErrOnLoop
	}
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		r.closing.Store(true)
		for _, l := range r.loops {
			l.wake()
		}
	})
	r.wg.Wait()
	r.pipes.close()
	return nil
}

// Stats sums the loops' counters.
func (r *Reactor) Stats() Stats {
	var s Stats
	for _, l := range r.loops {
		s.Armed += l.armed.Load()
		s.CompletedReady += l.ready.Load()
		s.CompletedError += l.failed.Load()
		s.CompletedCancel += l.canceled.Load()
		s.CompletedClosed += l.closed.Load()
		s.StaleDropped += l.stale.Load()
		s.Rearmed += l.rearmed.Load()
		s.Wakeups += l.wakeups.Load()
		s.LoopTurns += l.turns.Load()
		s.KernelEnters += l.kernel.Load()
		s.Gathered += l.gathered.Load()
		s.EventsReaped += l.events.Load()
		s.MaxBatch = max(s.MaxBatch, l.maxBatch.Load())
		s.Outstanding += int64(l.outstanding.Load())
		s.Timers += l.timerCount.Load()
		s.BackendArmed += l.backendArmed.Load()
		s.Received += l.received.Load()
		s.RecvNoBuffers += l.nobufs.Load()
		s.RecvPolled += l.recvPolled.Load()
		s.SentInPlace += l.lend.taken.Load()
		s.InPlaceHeld += int64(l.lend.out.Load())
	}
	return s
}
