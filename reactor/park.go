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
// The loop's turns run inside the netpoller read (syscall.RawConn.Read):
// the runtime calls the turn when the read begins and again each time the
// descriptor polls readable, and the turn reports whether to stop. The
// read clears the descriptor's readiness only when it begins, so a
// readiness that comes while a turn runs is kept, and the turn that
// follows sleeps through nothing: a wake-up costs one non-blocking Wait,
// where a read per turn costs two (the look every fresh read must make,
// then the one after the wake-up).
//
// Other goroutines wake a parked loop by moving the read's deadline into
// the past (SetReadDeadline), which readies it without a system call and
// ends the read; the loop's timers are the same deadline set to their
// earliest expiry.
//
//	who         step                                   why this order
//	----------  -------------------------------------  --------------------------
//	loop        set the deadline (next timer or none)  before sleeping is
//	            sleeping.Store(true)                   published, so a waker's
//	            if inbox empty: sleep                  past deadline is never
//	            (netpoller: wait in the read)          overwritten by this turn's
//	waker       push; if sleeping.CAS(true, false):    the deadline stays past
//	            deadline := the past                   until the loop resets it:
//	loop        deadline error: yield, turn, reset     a sleep after it ends the
//	            the deadline, read again               read at once, never sleeps
//	                                                   through
//
// A past deadline that lands after the loop reset it only costs one
// spurious turn.
type parker struct {
	f  *os.File        // a dup of the poller's fd, registered with the netpoller
	rc syscall.RawConn // f's
	// Owned by the loop goroutine.
	turn  func() bool // serve's argument
	call  func(uintptr) bool
	cur   int64 // the deadline set last (nanotime); -1 = none
	stale bool  // the last read ended on the deadline: set it again
}

// errNotPollable reports a poller descriptor the runtime netpoller refused
// (the backend cannot run parked).
var errNotPollable = errors.New("reactor: the poller's descriptor cannot be parked on in the Go netpoller")

// newParker registers a dup of fd with the runtime netpoller.
func newParker(fd int) (*parker, error) {
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
	pk := &parker{f: f, rc: rc, cur: -1}
	pk.call = func(uintptr) bool { return pk.turn() }
	return pk, nil
}

// prepare sets the deadline the next wait ends at: a nanotime, or -1 for
// none. The loop calls it before it publishes that it sleeps (see parker).
func (pk *parker) prepare(deadline int64) {
	if deadline != pk.cur || pk.stale {
		pk.setDeadline(deadline)
	}
}

// serve runs turn in the netpoller read (see parker) until turn reports
// true, and then returns false; or until the deadline passes, and then
// yields and returns true.
func (pk *parker) serve(turn func() bool) bool {
	pk.turn = turn
	err := pk.rc.Read(pk.call)
	switch {
	case err == nil:
		return false
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
		return true
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
// Handler method), so that r.onLoop can tell a blocking call made from that
// code; leaveUser before the loop parks again.
func (l *loop) enterUser() {
	if !l.inUser.Load() {
		l.inUser.Store(true)
	}
}

func (l *loop) leaveUser() {
	if l.inUser.Load() {
		l.inUser.Store(false)
	}
}
