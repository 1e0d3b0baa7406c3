//go:build linux

package reactor

import (
	"context"
	"errors"

	"github.com/oneshot-io/oneshot/cancel"
)

// A blocking reader's receive through the ring (NetConn.Read on io_uring).
//
// A reader that would park on a readiness Poll and then read(2) instead
// parks on a one-shot RECV of at most len(p) bytes: the kernel fills one
// of the loop's provided buffers when data arrives, the loop copies it into
// p and puts the buffer back in the same turn, and the reader wakes with
// its bytes. That is one request where the Poll path makes a read(2) that
// finds nothing, the Poll, and the read(2) that takes the bytes.
//
// Exactly once holds for the bytes as for the request: the receive is a
// request like a Poll (one slot, one completion, Cancel racing it), and
// whatever aborts it (a deadline, Close, the reactor's Close) disarms it
// in the kernel and delivers it at its end (loop.withdrawal), so bytes the
// kernel took before the cancel reached it are copied into p (MustConsume)
// and returned, never dropped: the reader gets the bytes or the cancel,
// and bytes win; an error the kernel's receive consumed (a reset) is
// returned too, never left to look like EOF. The limit of len(p) means the kernel never
// takes more than the reader can hold, so nothing is left over in a loop
// buffer. p is written only by the loop, only while the reader waits for
// the completion, which is the happens-before edge that hands p back.

// errNoRingRead says the fd's loop has no receive path (epoll, or io_uring
// after polls); the caller reads after a Poll instead.
var errNoRingRead = errors.New("reactor: no receive through the ring on this loop")

// recvInto waits until fd has bytes and returns how many it copied into p
// (0 < n <= len(p)), or eof at the peer's end of file, or an error: the
// request's (a unix.Errno such as ECONNRESET or ENOBUFS, ErrClosed), or
// ctx.Err() when ctx ended first and no bytes came. p must not be empty.
// One receive fills at most one loop buffer (recvMax): n below that and
// len(p) means the socket held no more.
func (r *Reactor) recvInto(ctx context.Context, fd int, p []byte) (n int, eof bool, err error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	if r.onLoop() {
		return 0, false, ErrOnLoop
	}
	l, err := r.check(fd, In)
	if err != nil {
		return 0, false, err
	}
	if l.rcv == nil {
		return 0, false, errNoRingRead
	}
	if len(p) > r.recvMax() {
		p = p[:r.recvMax()]
	}
	w := r.waiters.Get().(*waiter)
	w.dst, w.n, w.errno = p, 0, 0
	defer func() {
		w.dst, w.n = nil, 0 // the pool keeps no reference to p
		r.waiters.Put(w)
	}()
	h, err := l.submit(fd, evRecv, w, 0)
	if err != nil {
		return 0, false, err
	}
	var res Result
	won := false
	select {
	case res = <-w.ch:
	case <-ctx.Done():
		won, _ = l.cancelOff(h)
		res = <-w.ch // the one completion: the receive's end, after its bytes
	}
	switch {
	case w.n > 0:
		return w.n, false, nil // bytes win over a cancel that raced them
	case w.errno != 0:
		// The receive failed in the kernel (a reset) whatever the
		// outcome: the socket's error went with it, so it is reported
		// here or never.
		return 0, false, w.errno
	case won:
		return 0, false, ctx.Err()
	case res.Err != nil:
		return 0, false, res.Err
	case res.Events&evEOF != 0:
		return 0, true, nil
	}
	// Ready without bytes or EOF is not a receive's end: the kernel ends
	// a RECV with bytes, 0 at EOF, or an error.
	panic("reactor: a receive ended Ready with no bytes and no EOF")
}

// recvMax is the most one receive through the ring brings: a loop buffer.
func (r *Reactor) recvMax() int { return r.cfg.RecvBufferSize }

// withdrawal is what the loop does with an aborted request it did not
// cancel itself: one another goroutine canceled (opCancel), or one the
// closer or CloseFd closed. A reader's receive the kernel holds is disarmed
// and delivered at its end (act's MustAskLoopToCancel), never withdrawn: a
// withdrawal delivers at once, and bytes the kernel took before the cancel
// reached it would then be copied for a reader that is gone (into a waiter
// the pool has handed to another Poll). So is an accept through the ring,
// so that its owner sees every connection it opened before its end
// (listen.go). Anything else is withdrawn (a
// Conn's receive keeps its own protocol: conn_recv.go). The request's data
// is read only while the loop holds it armed (OnQueue, this life): only the
// loop moves it out of there.
func (l *loop) withdrawal(h reqHandle) cancel.Action {
	if st := h.State(); st.Gen() == h.Gen() && st.Phase() == cancel.OnQueue {
		if d := h.Data(); d.ev&evRecv != 0 && isWaiter(d.owner) || d.ev&evAccept != 0 {
			return cancel.MustAskLoopToCancel
		}
	}
	return h.Withdraw()
}

// received copies the bytes of a reader's receive into its p. The limit
// armed with the receive (len(p)) bounds them, so they fit; one receive
// brings one buffer, so this runs at most once per request.
func (w *waiter) received(b []byte) {
	if len(b) > len(w.dst)-w.n {
		panic("reactor: a receive brought more bytes than its reader can hold")
	}
	w.n += copy(w.dst[w.n:], b)
}
