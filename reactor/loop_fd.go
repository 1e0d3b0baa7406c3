//go:build linux

package reactor

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/cancel"
	"github.com/oneshot-io/oneshot/poller"
)

// The loop's descriptor of each fd it serves (l.fds): the list of the fd's
// live requests (fdDesc.reqs, reqData.prev and next), which closeFdOn
// completes before close(2). Beside it, the Conns open on the loop
// (l.served, conn_table.go); the list links by slot index, where a handle
// would take four times the room.
//
// What is indexed by fd is paid per loop: a Listener hands its Conns to
// the loops in turn, whatever their numbers, so a table a Conn's number
// grew would span about every fd number on every loop, and a byte there
// would cost Loops bytes per connection. So a Conn's requests are on no
// fd's list (the Conn finds them: closeConnFd), and a loop finds its
// Conns (for Listener.Shutdown) in l.served, one 16-byte place per Conn
// of its own.

// fdDesc is what a loop knows of one fd, in a table indexed by fd.
//
// Invariant: reqs is 0 iff no live request is armed on the fd (link,
// unlink).
type fdDesc struct {
	reqs uint32 // the slot index+1 of the first live request armed on the fd; 0 = none (reqAt)
}

// desc returns fd's descriptor, growing the table to hold it.
func (l *loop) desc(fd int) *fdDesc {
	l.fds.Grow(fd + 1)
	return l.fds.At(fd)
}

// reqOf returns the handle of a live request from the tag a request
// deadline's heap entry keeps for it (timer.go), which removes the entry
// before the slot is released, so the lookup cannot miss; a miss is a
// broken invariant.
func (l *loop) reqOf(tag uint64) reqHandle {
	h, ok := l.table.Lookup(tag)
	if !ok {
		panic(fmt.Sprintf("reactor: tag %#x names no live request", tag))
	}
	return h
}

// reqAt returns the live request a link names: a place on an fd's list
// (fdDesc.reqs, reqData.prev and next) or a Conn's in-flight request
// (Conn.rd, Conn.wr), each its slot index+1, 4 bytes where a handle takes
// 16 and a tag 8. A link is dropped before its request's slot is freed:
// unlink takes a request off its list before delivery releases the slot,
// and the Conn's callback that deliver calls clears c.rd or c.wr first
// thing, with nothing run in between (or the slot stays, owed, for the
// kernel's end). So the slot is in that request's life; a Free one is a
// broken invariant.
func (l *loop) reqAt(link uint32) reqHandle {
	h, ok := l.table.Live(link - 1)
	if !ok {
		panic(fmt.Sprintf("reactor: request link %d names no live request", link))
	}
	return h
}

// closeFdOn completes every live request on fd (a Closed outcome read as
// ErrFdClosed, unless something already won), makes the poller forget fd,
// and only then closes it, so the fd number can come back only once
// nothing of its old life can reach a request; and once the kernel holds
// nothing of it (settle), so that the close releases the file as close(2)
// alone would.
func (l *loop) closeFdOn(fd int) {
	l.forgetFdOn(fd)
	l.settle(fd)
	_ = unix.Close(fd) // EINTR/EIO on close still release the descriptor
}

// settleBound bounds how long a close waits for the kernel to end the
// requests it canceled: the loop serves nothing meanwhile. The kernel ends
// a canceled poll, receive or accept at once.
const settleBound = time.Second

// settle waits until the kernel has ended the requests canceled so far
// (poller.Settle), fd's among them. Each io_uring request holds its file
// (liburing #932): closed before they ended, a listening socket went on
// completing handshakes that its last release then reset (a dial after
// Listener.Close connected in 13 of 200 runs on io_uring), so it used to
// be shut down first, which also stopped a copy of it (NetListener.File)
// listening. The kernel ends a canceled request at once (within 0.2 ms on
// 6.18, sends to a full socket and multishot receives under load
// included); should it not within settleBound, the close goes ahead,
// logged, and the file lives until the request ends. Without a canceled
// request this makes no system call.
func (l *loop) settle(fd int) {
	err := l.p.Settle(settleBound)
	if err == nil || errors.Is(err, poller.ErrClosed) {
		return // a closed poller drained the kernel
	}
	l.r.cfg.Logger.Sugar().Warnw("reactor: closing fd while the kernel still holds it", "fd", fd, "loop", l.id, "err", err)
}

// closeConnFd is closeFdOn for a Conn's fd. A Conn's requests are not on
// its fd's list: they are c.rd and c.wr, the only cancel requests the
// layer arms on it (its receive is its own, which finish retired first:
// conn_table.go; forgetFdOn still ends any on this loop's list; a user's Arm on
// c.Fd() lands on loopFor(fd), c's loop only by chance, and Fd is for
// diagnostics), so the fd table need not span the fd numbers of Conns
// (which each loop would pay for every fd: see the package doc).
func (l *loop) closeConnFd(c *Conn) {
	var buf [2]reqHandle
	hs := buf[:0]
	for _, t := range [2]uint32{c.rd, c.wr} {
		if t != 0 {
			hs = append(hs, l.reqAt(t))
		}
	}
	l.closeAll(hs)
	l.forgetFdOn(int(c.fd)) // its list is empty; the poller forgets fd
	_ = unix.Close(int(c.fd))
}

// forgetFdOn is closeFdOn without the close(2), for a number that may no
// longer be the reactor's to close.
func (l *loop) forgetFdOn(fd int) {
	var buf [4]reqHandle
	hs := buf[:0]
	if fd < l.fds.Cap() {
		for t := l.fds.At(fd).reqs; t != 0; {
			h := l.reqAt(t)
			hs = append(hs, h)
			t = h.Data().next
		}
	}
	l.closeAll(hs)
	l.p.Forget(fd)
}

// closeAll completes the requests hs of an fd being closed (a Closed
// outcome read as ErrFdClosed, unless something already won).
func (l *loop) closeAll(hs []reqHandle) {
	for _, h := range hs {
		if !h.Current() {
			continue // a callback run by an earlier one finished it
		}
		if h.State().Outcome() == cancel.Undecided {
			h.Data().why = whyFdClosed
		}
		l.act(h, h.Close())
		// A Cancel that won before and whose withdraw still waits in the
		// inbox is withdrawn now: fd goes away before the inbox is read.
		l.act(h, l.withdrawal(h))
	}
}

func (l *loop) link(h reqHandle) {
	d := h.Data()
	fdd := l.desc(int(d.fd))
	me := uint32(h.Index() + 1)
	d.prev, d.next = 0, fdd.reqs
	if d.next != 0 {
		l.reqAt(d.next).Data().prev = me
	}
	fdd.reqs = me
	d.listed = true
}

func (l *loop) unlink(h reqHandle) {
	d := h.Data()
	if d.prev != 0 {
		l.reqAt(d.prev).Data().next = d.next
	} else {
		l.fds.At(int(d.fd)).reqs = d.next
	}
	if d.next != 0 {
		l.reqAt(d.next).Data().prev = d.prev
	}
	d.prev, d.next, d.listed = 0, 0, false
}
