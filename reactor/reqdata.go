//go:build linux

package reactor

import (
	"github.com/oneshot-io/oneshot/cancel"
	"github.com/oneshot-io/oneshot/poller"
)

// reqHandle names one life of a request slot (cancel's Handle).
type reqHandle = cancel.Handle[reqData]

// The poller records a tag by its index bits; cancel's tags must not need
// more (this underflows, failing the build, if they do).
const _ uint = poller.TagIndexBits - cancel.TagIndexBits

// Request kinds and results of the connection layer, in Events bits the
// kernel never reports: a parked reader's receive (reqData.ev, owned by a
// *waiter; a Conn's receive is the Conn's own, conn_table.go) and its end
// at the peer's EOF (reqData.ready).
const (
	evRecv Events = 1 << 30
	evSend Events = 1 << 27 // a Conn's send; its reqData.ready holds the bytes sent
	evEOF  Events = 1 << 29
	// evAccept: a listening socket's multishot accept through the ring
	// (listen.go); as a Result's Events, one connection it opened, whose
	// descriptor waits in loop.accepted during the callback.
	evAccept Events = 1 << 31
	// evEdge passes the poller's Edge promise with a poll: armed only
	// after EAGAIN, on an fd closed only through CloseFd (its Forget).
	evEdge = Events(poller.Edge)
)

// reqData is a request's payload in its cancel slot. It is written by the
// submitter until the handle is pushed to the loop's inbox (the push
// publishes it), then owned by the loop goroutine until the slot is released.
type reqData struct {
	fd int32
	ev Events
	// owner is whom the outcome goes to (deliver), one of: *Conn (its
	// send, or its readiness poll for In or Out), *waiter
	// (a Poll, or a reader's receive), *Request (an Arm: told the outcome
	// before the slot is released, then its callback runs), *lsock (an
	// accept) or *PacketConn (a read poll). One interface where a pointer
	// per kind took 32 bytes of every slot.
	owner  any
	timer  int32  // index+1 of the deadline in l.timers; 0 = none
	ready  Events // the mask of the event that decided Ready
	errno  int32  // the event that decided Failed (a unix.Errno)
	listed bool   // on its fd's list (fdDesc.reqs)
	// why is what a Failed or Closed outcome means when it is not the
	// errno or ErrClosed: the backend refused the arm (set just before
	// the loop steals the request as Failed; the error is l.refusal) or
	// a closer's reason (set, while the outcome is undecided, just
	// before the closer decides Closed). One field serves both: each is
	// set only on the loop and only by the party about to decide the
	// outcome it explains, and any other outcome (Canceled by a racing
	// Cancel) ignores it. A code, not an error: 16 bytes fewer in every
	// slot, and each reason is one of three.
	why why
	// pr is the poller's record of the request's tag while armed
	// (poller.Options.Records, kept here on io_uring rather than in a
	// 16-byte record of the poller's own per tag; loop.Record). It fits
	// the bytes why and listed left over: the slot stays 64 bytes.
	pr poller.TagRecord
	// prev, next: the fd's live requests, doubly linked by slot index+1
	// (0 ends the list; reqAt). A linked request is live until unlink,
	// so a link needs no generation: 4 bytes where a tag takes 8.
	prev, next uint32
}

// why says what a request's Failed or Closed outcome means (reqData.why).
type why uint8

const (
	whyNone     why = iota // the errno (Failed) or ErrClosed (Closed)
	whyRefused             // Failed: the backend refused the arm; l.refusal says how
	whyFdClosed            // Closed: ErrFdClosed
	whyDeadline            // Closed: its deadline passed (errDeadline)
)

// err returns what w means, or nil for whyNone; refusal is the loop's
// l.refusal.
func (w why) err(refusal error) error {
	switch w {
	case whyRefused:
		return refusal
	case whyFdClosed:
		return ErrFdClosed
	case whyDeadline:
		return errDeadline
	}
	return nil
}
