//go:build linux

package reactor

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A parked loop is an ordinary goroutine. Instead of blocking its OS thread
// in epoll_wait or io_uring_enter, it parks in Go's runtime netpoller on its
// poller's descriptor (the epoll fd, or the ring fd, which polls readable
// when completions are posted). When that descriptor becomes readable the
// runtime readies the loop goroutine on whichever P noticed, and what the
// loop readies in turn (a Poll waiter, a goroutine a callback signalled)
// goes to the same P's run queue: no OS thread is woken to hand the work
// over, which is what a loop locked to its thread pays twice per wake.
//
// Other goroutines wake a parked loop by moving its read deadline into the
// past (SetReadDeadline), which readies it without a system call; the
// loop's timers are the same deadline set to their earliest expiry.
//
//	who         step                                   why this order
//	----------  -------------------------------------  --------------------------
//	loop        set the deadline (next timer or none)  before sleeping is
//	            sleeping.Store(true)                   published, so a waker's
//	            if inbox empty: park                   past deadline is never
//	            (netpoller: check, then wait)          overwritten by this turn's
//	waker       push; if sleeping.CAS(true, false):    the deadline stays past
//	            deadline := the past                   until the loop resets it:
//	loop        woken or deadline error: reset the     a park after it returns at
//	            deadline next turn                     once, never sleeps through
//
// A past deadline that lands after the loop reset it only costs one
// spurious turn.
type parker struct {
	f     *os.File        // a dup of the poller's fd, registered with the netpoller
	rc    syscall.RawConn // f's
	check func(uintptr) bool
	// Owned by the loop goroutine.
	cur   int64 // the deadline set last (nanotime); -1 = none
	stale bool  // the last park ended on the deadline: set it again
}

// errNotPollable reports a poller descriptor the runtime netpoller refused
// (the backend cannot run parked).
var errNotPollable = errors.New("reactor: the poller's descriptor cannot be parked on in the Go netpoller")

// newParker registers a dup of fd with the runtime netpoller. check is
// called, on the parking goroutine, to look for work without blocking: it
// reports whether there was some.
func newParker(fd int, check func() bool) (*parker, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reactor: dup poller fd: %w", err)
	}
	// O_NONBLOCK is what makes os.NewFile register the descriptor with
	// the netpoller; epoll_wait and io_uring_enter ignore it.
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return nil, fmt.Errorf("reactor: poller fd: %w", err)
	}
	f := os.NewFile(uintptr(nfd), "reactor-poller")
	rc, err := f.SyscallConn()
	if err == nil {
		// A descriptor the netpoller refused has no deadlines.
		err = f.SetReadDeadline(time.Time{})
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %w", errNotPollable, err)
	}
	return &parker{f: f, rc: rc, cur: -1, check: func(uintptr) bool { return check() }}, nil
}

// prepare sets the deadline the next wait ends at: a nanotime, or -1 for
// none. The loop calls it before it publishes that it sleeps (see parker).
func (pk *parker) prepare(deadline int64) {
	if deadline != pk.cur || pk.stale {
		pk.setDeadline(deadline)
	}
}

// wait calls check, and while it finds nothing, waits in the netpoller
// until the poller's fd polls readable, the deadline passes or unpark is
// called.
func (pk *parker) wait() {
	err := pk.rc.Read(pk.check)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrDeadlineExceeded):
		pk.stale = true
		// Woken by another goroutine (or a timer): the runtime put the
		// loop in its P's runnext slot, where it inherits the time slice
		// of the goroutine that woke it. A loop and the waiters it
		// delivers to then hand the P to each other through runnext for
		// a whole 10 ms slice while every other runnable goroutine waits
		// (net/http on NetListen: p99 21 ms against 2 ms for net.Listen).
		// Going to the back of the queue once per such wake keeps the
		// loop fair.
		runtime.Gosched()
	default:
		panic("reactor: parked loop: " + err.Error())
	}
}

func (pk *parker) setDeadline(deadline int64) {
	pk.cur, pk.stale = deadline, false
	var t time.Time
	if deadline >= 0 {
		t = epoch.Add(time.Duration(deadline))
	}
	if err := pk.f.SetReadDeadline(t); err != nil {
		panic("reactor: parked loop: set deadline: " + err.Error())
	}
}

// longAgo is a deadline already passed.
var longAgo = time.Unix(1, 0)

// unpark makes the loop's park return (or its next one, at once). Safe
// from any goroutine; after close it does nothing.
func (pk *parker) unpark() {
	_ = pk.f.SetReadDeadline(longAgo) // fails only once the loop closed f
}

func (pk *parker) close() {
	if err := pk.f.Close(); err != nil {
		panic("reactor: parked loop: close: " + err.Error())
	}
}

// enterUser is called before the loop runs user code (a callback, a
// Handler method): a parked loop pins itself to its current thread and
// records the thread's id, so that r.onLoop can tell a blocking call made
// from that code. leaveUser undoes it before the loop parks again. A loop
// locked for its whole life keeps its id from start to stop.
func (l *loop) enterUser() {
	if l.pk == nil || l.tid.Load() != 0 {
		return
	}
	runtime.LockOSThread()
	l.tid.Store(int32(unix.Gettid()))
}

func (l *loop) leaveUser() {
	if l.pk == nil || l.tid.Load() == 0 {
		return
	}
	l.tid.Store(0)
	runtime.UnlockOSThread()
}
