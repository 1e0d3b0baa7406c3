//go:build linux

package reactor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// This file is the blocking socket layer under NetConn and NetListener. It
// uses only the reactor's public contract: nonblocking syscalls, and on
// EAGAIN a Poll for the direction that would block, whose context ends
// when a deadline passes, a deadline changes to the past, or Close is
// called. Closing goes through CloseFd, so no syscall of this layer ever
// reaches an fd number after it was closed (see fdRef).

// fdRef guards a descriptor's number against reuse, like internal/poll's
// fdMutex without its reader/writer locks: every syscall on the fd runs
// under a reference, Close marks the fd closed, and whoever drops the last
// reference of a closed fd closes it. One atomic word:
//
//	63                                   1   0
//	+-------------------------------------+---+
//	|          references (63 bits)       | C |
//	+-------------------------------------+---+
//
// C: Close was called; no new reference is granted.
type fdRef struct{ state atomic.Uint64 }

const (
	refClosed = 1 << 0              // C
	refOne    = refClosed << 1      // one reference
	refMask   = ^uint64(refOne - 1) // the reference field
)

// incref takes a reference; it reports false, taking none, once the fd is
// marked closed.
func (f *fdRef) incref() bool { return f.take(0) }

// increfAndClose marks the fd closed and takes a reference, so that the
// caller can wake the waiters before its decref may close the fd. It
// reports false, taking nothing, when the fd was already marked closed.
func (f *fdRef) increfAndClose() bool { return f.take(refClosed) }

// take adds a reference and the mark bits, unless the fd is marked closed.
func (f *fdRef) take(mark uint64) bool {
	for {
		old := f.state.Load()
		if old&refClosed != 0 {
			return false
		}
		if old&refMask == refMask {
			panic("reactor: too many concurrent operations on one net.Conn")
		}
		if f.state.CompareAndSwap(old, (old|mark)+refOne) {
			return true
		}
	}
}

// decref drops a reference. It reports whether that was the last one of a
// closed fd: the caller must then close the fd; nobody else will.
func (f *fdRef) decref() bool {
	n := f.state.Add(^uint64(refOne - 1)) // -refOne
	if n&refMask == refMask {
		panic("reactor: inconsistent fdRef: more decrefs than increfs")
	}
	return n == refClosed
}

// isClosed reports whether Close marked the fd.
func (f *fdRef) isClosed() bool { return f.state.Load()&refClosed != 0 }

// wakeCtx is the context of one parked Poll: it ends when its channel is
// closed. A chan is pointer-shaped, so passing it as a context.Context does
// not allocate.
type wakeCtx chan struct{}

func (c wakeCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c wakeCtx) Done() <-chan struct{}       { return c }
func (c wakeCtx) Value(any) any               { return nil }
func (c wakeCtx) Err() error {
	select {
	case <-c:
		return context.Canceled
	default:
		return nil
	}
}

// pollWait is one direction of a netFD (reading, accepting or writing): its
// deadline and the wake channel of the Poll parked there. Each direction
// has at most one parked Poll: its callers are serialized by the netFD.
type pollWait struct {
	expired atomic.Bool // the deadline passed; written under mu, read anywhere

	mu       sync.Mutex
	deadline time.Time     // guarded by mu; zero is none
	timer    *time.Timer   // guarded by mu; made at the first future deadline
	wake     chan struct{} // guarded by mu: closed to end the parked Poll
	parked   bool          // guarded by mu: a Poll waits on wake
}

// interruptLocked ends the parked Poll, if any, so that its caller looks at
// the deadline and the closed mark again. w.mu is held.
func (w *pollWait) interruptLocked() {
	if w.parked {
		close(w.wake)
		w.wake, w.parked = nil, false
	}
}

func (w *pollWait) interrupt() {
	w.mu.Lock()
	w.interruptLocked()
	w.mu.Unlock()
}

// setDeadline sets the direction's deadline, as net.Conn's SetDeadline: in
// the past it times out the operation parked now and every later one; zero
// clears it; a later time re-enables the direction after a timeout.
func (w *pollWait) setDeadline(t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadline = t
	if t.IsZero() {
		w.expired.Store(false)
		if w.timer != nil {
			w.timer.Stop()
		}
		return
	}
	d := time.Until(t)
	if d <= 0 {
		w.expired.Store(true)
		if w.timer != nil {
			w.timer.Stop()
		}
		w.interruptLocked()
		return
	}
	w.expired.Store(false)
	if w.timer == nil {
		w.timer = time.AfterFunc(d, w.fire)
	} else {
		w.timer.Reset(d)
	}
}

// fire is the deadline timer. A timer that a later setDeadline already
// moved finds its deadline not yet due (or cleared) and does nothing; a
// deadline judged early on the wall clock is rescheduled.
func (w *pollWait) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.deadline.IsZero() || w.expired.Load() {
		return
	}
	if d := time.Until(w.deadline); d > 0 {
		w.timer.Reset(d)
		return
	}
	w.expired.Store(true)
	w.interruptLocked()
}

// stop releases the timer when the fd closes.
func (w *pollWait) stop() {
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
}

// errReactorClosed is what a parked operation returns when the Reactor
// closed under it: it wraps both net.ErrClosed (what net/http and friends
// test for) and ErrClosed.
var errReactorClosed = fmt.Errorf("%w: %w", net.ErrClosed, ErrClosed)

// netFD is a stream socket served by blocking calls parked on a Reactor.
type netFD struct {
	r     *Reactor // constant
	sysfd int      // constant; valid while a reference is held
	net   string   // constant: "tcp", "tcp4", "tcp6" or "unix"
	laddr net.Addr // constant
	raddr net.Addr // constant; nil for listeners
	// listener: a listening socket (accept, no peer); constant.
	listener bool
	// unlink is the path of a Unix listening socket this process bound,
	// removed at close as net's UnixListener does, unless keepPath;
	// constant.
	unlink   string
	keepPath atomic.Bool // NetListener.SetUnlinkOnClose(false)

	// ringRead: reads may park on a receive through the ring
	// (recvInto), the fd's loop having that path; constant.
	ringRead bool

	// ctr: an accepted NetConn's counts for its listener (NetListener.Stats);
	// nil on others; constant.
	ctr *connCounters
	// cleanup closes the socket of a netFD dropped without Close
	// (collectable); destroy stops it. Set before the netFD is shared.
	cleanup runtime.Cleanup

	ref  fdRef
	done chan struct{} // closed by destroy: Close waits for it
	rmu  sync.Mutex    // serializes readers (and accepters): one Poll for In at a time
	// waitFirst: guarded by rmu. The last read drained the socket, so
	// the next one parks on a receive at once instead of first making a
	// read(2) that would find nothing: what a request-response peer
	// (HTTP, RPC) does on every request. A receive that fills p clears
	// it: more may be queued, and read(2) takes it without a wake.
	waitFirst bool
	wmu       sync.Mutex // serializes writers: whole writes do not interleave
	rd, wr    pollWait
}

func newNetFD(r *Reactor, fd int, network string, laddr, raddr net.Addr) *netFD {
	return &netFD{r: r, sysfd: fd, net: network, laddr: laddr, raddr: raddr, done: make(chan struct{}),
		ringRead: r.loopFor(fd).rcv != nil}
}

// prepare is the check every operation makes before its syscall: closed
// first (as net reports), then the direction's deadline.
func (fd *netFD) prepare(w *pollWait) error {
	if fd.ref.isClosed() {
		return net.ErrClosed
	}
	if w.expired.Load() {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// park runs call, a request parked on the reactor, under w's wake
// context, which a deadline, a deadline change or Close ends. An
// interrupted call (context.Canceled) returns nil, for the caller to
// prepare and try again; the reactor's closing is errReactorClosed.
func (fd *netFD) park(w *pollWait, call func(ctx context.Context) error) error {
	w.mu.Lock()
	// Close marks the fd before it takes w.mu to interrupt, and a
	// deadline is stored under w.mu: checked here, neither is missed.
	if err := fd.prepare(w); err != nil {
		w.mu.Unlock()
		return err
	}
	if w.wake == nil {
		w.wake = make(chan struct{})
	}
	ctx := wakeCtx(w.wake)
	w.parked = true
	w.mu.Unlock()

	err := call(ctx)

	w.mu.Lock()
	w.parked = false // one waiter per direction: if an interrupt did not, we do
	w.mu.Unlock()
	switch {
	case err == nil, err == context.Canceled:
		return nil
	case errors.Is(err, ErrClosed):
		return errReactorClosed
	default:
		return err
	}
}

// wait parks on the reactor until ev is ready on the fd, or until a
// deadline, a deadline change or Close interrupts it; either way it returns
// nil and the caller prepares and tries its syscall again (Err and Hup
// included: the syscall reports them). It returns an error when the fd
// closed, the deadline passed, or the Poll failed.
// afterEAGAIN says the caller's syscall just found the socket not ready,
// which lets epoll keep the fd registered between waits (poller.Edge:
// the fd is closed only through CloseFd); a wait without it polls the
// level, as a RawConn callback that declines may not have drained.
func (fd *netFD) wait(w *pollWait, ev Events, afterEAGAIN bool) error {
	var extra Events
	if afterEAGAIN {
		extra = evEdge
	}
	return fd.park(w, func(ctx context.Context) error {
		_, err := fd.r.poll(ctx, fd.sysfd, ev, extra)
		return err
	})
}

// recv parks on a receive through the ring of at most len(p) bytes, as
// wait parks on a Poll: when interrupted it returns (0, false, nil) for
// the caller to prepare and look again. Bytes the receive took are
// returned even when an interrupt raced them.
func (fd *netFD) recv(w *pollWait, p []byte) (n int, eof bool, err error) {
	err = fd.park(w, func(ctx context.Context) error {
		var err error
		n, eof, err = fd.r.recvInto(ctx, fd.sysfd, p)
		return err
	})
	if err != nil {
		return 0, false, err
	}
	return n, eof, nil
}

// destroy closes the fd; called once, by whoever dropped the last
// reference after Close. The fd's loop completes whatever the kernel still
// holds for the fd before close(2), and destroy waits for that, so that
// Close returns with the fd closed, as net's does, except on a loop (which
// cannot wait for itself); after the reactor closed there is nothing left
// there and the fd is closed here.
func (fd *netFD) destroy() {
	fd.cleanup.Stop() // fd is reachable here: the cleanup has not run
	fd.rd.stop()
	fd.wr.stop()
	if fd.r.onLoop() {
		closePolled(fd.r, fd.sysfd) // a loop cannot wait for itself
	} else {
		closePolledWait(fd.r, fd.sysfd)
	}
	if fd.unlink != "" && !fd.keepPath.Load() {
		_ = os.Remove(fd.unlink) // best effort, as net's UnixListener
	}
	if fd.ctr != nil {
		fd.ctr.retire()
	}
	close(fd.done)
}

// collectable arranges that fd's socket is closed, as Close would, if fd
// becomes unreachable without Close, as net's netFD finalizer does: a
// program that drops a NetConn or NetListener unclosed leaks neither its
// descriptor nor its loop's record of it. Whatever still references fd
// keeps it open: its NetConn or NetListener, a SyscallConn's RawConn, an
// operation parked on it, and a deadline timer until it fires. The close
// goes through the reactor without waiting for it (the runtime runs
// cleanups one at a time); a Unix listener's path is left, as net's
// finalizer leaves it. Call it once fd is built (ctr included).
func (fd *netFD) collectable() {
	fd.cleanup = runtime.AddCleanup(fd, closeDropped, dropped{r: fd.r, sysfd: fd.sysfd, ctr: fd.ctr})
}

// dropped is what closing an unreachable netFD needs; nothing in it
// references the netFD, which would keep it reachable.
type dropped struct {
	r     *Reactor
	sysfd int
	ctr   *connCounters
}

func closeDropped(d dropped) {
	closePolled(d.r, d.sysfd)
	if d.ctr != nil {
		d.ctr.retire()
	}
}

// decref drops a reference and closes the fd if it was the last of a
// closed fd.
func (fd *netFD) decref() {
	if fd.ref.decref() {
		fd.destroy()
	}
}

// Close marks the fd closed, interrupts parked operations (they return
// errors wrapping net.ErrClosed) and closes it once the last of them
// returned. Like internal/poll's FD.Close it waits for that, so that when
// it returns the fd is closed, a listener no longer listens and a Unix
// socket's path is gone; called on a loop it cannot wait (a parked Poll
// being canceled needs that loop) and returns at once.
func (fd *netFD) Close() error {
	if !fd.ref.increfAndClose() {
		return net.ErrClosed
	}
	fd.rd.interrupt()
	fd.wr.interrupt()
	fd.decref()
	if !fd.r.onLoop() {
		<-fd.done
	}
	return nil
}

// maxRW bounds one read or write syscall, as internal/poll does.
const maxRW = 1 << 30

// Read reads into p, parking on the reactor while nothing is there. A
// closed peer is io.EOF.
func (fd *netFD) Read(p []byte) (n int, err error) {
	if !fd.ref.incref() {
		return 0, net.ErrClosed
	}
	defer fd.decref()
	defer func() { fd.countIn(n) }() // before the decref that may retire
	fd.rmu.Lock()
	defer fd.rmu.Unlock()
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	ring := fd.ringRead // false once this Read finds it cannot park on a receive
	for {
		if err := fd.prepare(&fd.rd); err != nil {
			return 0, err
		}
		if len(p) == 0 {
			return 0, nil
		}
		if fd.waitFirst && ring {
			n, eof, err := fd.recv(&fd.rd, p)
			switch {
			case err == nil && n > 0:
				fd.waitFirst = n < min(len(p), fd.r.recvMax())
				return n, nil
			case err == nil && eof:
				return 0, io.EOF
			case err == nil:
				continue // interrupted: prepare again
			case err == unix.ENOBUFS, errors.Is(err, errNoRingRead):
				// Every loop buffer is lent (or the loop has no
				// receive path): this read goes after a Poll.
				fd.waitFirst = false
				if err := fd.wait(&fd.rd, In, false); err != nil {
					return 0, err
				}
			case err == ErrOnLoop, err == errReactorClosed:
				// Called from a loop callback, which cannot park, or
				// the reactor closed: take what the socket has (bytes,
				// EOF), as the epoll path does; if nothing, the wait
				// fails so.
				ring, fd.waitFirst = false, false
			default:
				var errno unix.Errno
				if errors.As(err, &errno) {
					return 0, os.NewSyscallError("read", errno)
				}
				return 0, err // closed, a deadline
			}
		}
		n, err := rawRead(fd.sysfd, p)
		switch {
		case err == nil && n == 0:
			return 0, io.EOF
		case err == nil:
			return n, nil
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN && ring:
			fd.waitFirst = true
		case err == unix.EAGAIN:
			if err := fd.wait(&fd.rd, In, true); err != nil {
				return 0, err
			}
		default:
			return 0, os.NewSyscallError("read", err)
		}
	}
}

// Write writes all of p, parking on the reactor while the socket's buffer
// is full. It returns how much was written and, if less than p, why.
func (fd *netFD) Write(p []byte) (nn int, err error) {
	if !fd.ref.incref() {
		return 0, net.ErrClosed
	}
	defer fd.decref()
	defer func() { fd.countOut(int64(nn)) }() // before the decref that may retire
	fd.wmu.Lock()
	defer fd.wmu.Unlock()
	// Close and the deadline are looked at here and by each wait (park),
	// as internal/poll does, and not once all of p is written: a Write
	// whose last bytes went out then never reports a failure because a
	// deadline passed or Close came meanwhile.
	if err := fd.prepare(&fd.wr); err != nil {
		return 0, err
	}
	for nn < len(p) {
		n, err := rawWrite(fd.sysfd, p[nn:min(len(p), nn+maxRW)])
		if n > 0 {
			nn += n
		}
		switch {
		case nn == len(p):
		case err == nil && n == 0:
			return nn, io.ErrUnexpectedEOF
		case err == nil, err == unix.EINTR:
		case err == unix.EAGAIN:
			if err := fd.wait(&fd.wr, Out, true); err != nil {
				return nn, err
			}
		default:
			return nn, os.NewSyscallError("write", err)
		}
	}
	return nn, nil
}

// accept takes one connection, parking on the reactor while none is
// queued. It returns the new fd (nonblocking, close-on-exec) and the
// peer's address.
func (fd *netFD) accept() (int, unix.Sockaddr, error) {
	if !fd.ref.incref() {
		return -1, nil, net.ErrClosed
	}
	defer fd.decref()
	fd.rmu.Lock()
	defer fd.rmu.Unlock()
	for {
		if err := fd.prepare(&fd.rd); err != nil {
			return -1, nil, err
		}
		var rsa unix.RawSockaddrAny
		nfd, err := rawAccept(fd.sysfd, &rsa)
		switch err {
		case nil:
			sa, _ := sockaddrOf(&rsa) // rawAccept checked the family
			return nfd, sa, nil
		case unix.EINTR, unix.ECONNABORTED:
		case unix.EAGAIN:
			if err := fd.wait(&fd.rd, In, true); err != nil {
				return -1, nil, err
			}
		default:
			// EMFILE and friends: the error is Temporary, so
			// net/http's Serve backs off instead of spinning.
			return -1, nil, os.NewSyscallError("accept4", err)
		}
	}
}

// shutdown half-closes the socket (unix.SHUT_RD or SHUT_WR).
func (fd *netFD) shutdown(how int) error {
	if !fd.ref.incref() {
		return net.ErrClosed
	}
	defer fd.decref()
	if err := unix.Shutdown(fd.sysfd, how); err != nil {
		return os.NewSyscallError("shutdown", err)
	}
	return nil
}

// setDeadline sets the deadline of the read side, the write side or both.
func (fd *netFD) setDeadline(t time.Time, read, write bool) error {
	if !fd.ref.incref() {
		return net.ErrClosed
	}
	defer fd.decref()
	if read {
		fd.rd.setDeadline(t)
	}
	if write {
		fd.wr.setDeadline(t)
	}
	return nil
}

// file returns a duplicate of the fd as an *os.File, as net's File
// methods do: closing either leaves the other open, and the two share the
// socket (its options, its nonblocking mode).
func (fd *netFD) file() (*os.File, error) {
	var f *os.File
	err := fd.control(func(s int) error {
		nfd, err := unix.FcntlInt(uintptr(s), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("dup", err)
		}
		name := fd.net + ":" + addrString(fd.laddr)
		if fd.raddr != nil {
			name += "->" + addrString(fd.raddr)
		}
		f = os.NewFile(uintptr(nfd), name)
		return nil
	})
	return f, err
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// control runs f with the fd held open, for socket options.
func (fd *netFD) control(f func(fd int) error) error {
	if !fd.ref.incref() {
		return net.ErrClosed
	}
	defer fd.decref()
	return f(fd.sysfd)
}

// opErr wraps err as net does: a *net.OpError naming the operation, the
// network and the addresses. io.EOF and nil pass through.
func (fd *netFD) opErr(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, errno)
	}
	src, dst := fd.laddr, fd.raddr
	if fd.listener { // net names a listener's address as Addr
		src, dst = nil, fd.laddr
	}
	return &net.OpError{Op: op, Net: fd.net, Source: src, Addr: dst, Err: err}
}

// opErrLocal is opErr naming only the local address, as net's errors of
// the options every socket has (SetReadBuffer, SetWriteBuffer) do.
func (fd *netFD) opErrLocal(op string, err error) error {
	err = fd.opErr(op, err)
	if oe, ok := err.(*net.OpError); ok {
		oe.Source, oe.Addr = nil, fd.laddr
	}
	return err
}

// tcpOnly refuses, as the kernel refuses TCP_NODELAY there, a TCP
// option on a Unix socket before any of it is set.
func (fd *netFD) tcpOnly() error {
	if fd.net == "unix" {
		return unix.EOPNOTSUPP
	}
	return nil
}
