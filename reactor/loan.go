//go:build linux

package reactor

import (
	"sync/atomic"
	"unsafe"

	"github.com/oneshot-io/oneshot/poller"
)

// Sending from the receive buffer (ListenConfig.SendInPlace). A handler that
// writes what it was handed (an echo, a proxy) would have Write copy the
// bytes into an output chunk and the send read them from there. Where the
// Listener allows it (the handler leaves the bytes alone once written:
// Write's doc promises a copy otherwise) and the loop's receive buffers are
// whole ones of an output chunk's size, the buffer itself can be the chunk:
// the loop offers the buffer of the receive it is delivering (lender), a
// Write of the delivered bytes' tail, with nothing pending and its send
// going through the ring, takes it, and the buffer goes back to the kernel when
// the chunk would have gone back to the pool (outPool.put), not when the
// handler returns. The C reference server sends the same way.
//
// The buffer is the Conn's from the take until then, and the kernel's
// send may read it until the send's end: a Conn closed with its send in
// flight keeps it (outBuf.abandon) until the send's slot is released
// (loop.act → sendSlotReleased), exactly as it keeps a chunk of its own;
// the loop's stop waits for every send's end before the ring closes, so no
// loan outlives the ring. Loans are capped per loop (a quarter of the
// buffers) so that Conns whose peers read slowly cannot leave the receives
// without buffers; past the cap Write copies.
//
//	who    step                                         why
//	-----  -------------------------------------------  ----------------------
//	loop   offer.Store(o) for the receive delivered      a Write during the
//	       → handler → Write: CAS(o, nil), the buffer    call takes it once
//	       becomes c's first chunk (Conn's mu held)      (CAS), by aliasing
//	loop   offer.Swap(nil) == nil: taken, no Release      the handler returned
//	loop   the chunk's put (consume, reset) → Release     the send is done with it
type lender struct {
	offer atomic.Pointer[loanOffer] // the receive being delivered, while a Write may take it
	o     loanOffer                 // loop-owned; offer points here
	// out: loans taken and not yet released (taken by a Write, released
	// on the loop); max: the cap.
	out atomic.Int32
	max int32
	// taken counts the loans ever taken (for tests and Stats-free
	// checks that the path is used).
	taken atomic.Uint64
}

// loanOffer is the buffer of the receive being delivered.
type loanOffer struct {
	ev   poller.Event   // the receive's, for Release
	base unsafe.Pointer // the buffer's first byte (the bytes start there: Off 0)
	n    int            // bytes received
}

// outLoan marks an outChunk whose bytes are a loaned receive buffer.
type outLoan struct {
	l  *loop
	ev poller.Event
}

// setupLoans decides whether l's receives can be lent: whole buffers (not
// incremental pieces) of exactly an output chunk's size.
func (l *loop) setupLoans(bufs, size int) {
	if l.rcv == nil || l.rcv.Incremental() || size != outChunkSize {
		return
	}
	l.lend.max = int32(bufs / 4)
}

// deliverLent hands c the bytes ev's receive brought, offering their
// buffer while it does, and reports whether a Write took it: then the
// buffer is that Write's Conn's, and the loop must not Release it.
func (l *loop) deliverLent(ev *poller.Event, c *Conn) (taken bool) {
	b := l.rcv.Bytes(ev)
	if l.lend.max == 0 || ev.Off != 0 {
		c.received(b)
		return false
	}
	l.lend.o = loanOffer{ev: *ev, base: unsafe.Pointer(unsafe.SliceData(b)), n: len(b)}
	l.lend.offer.Store(&l.lend.o)
	c.received(b)
	return l.lend.offer.Swap(nil) == nil
}

// takeLoan makes b's receive buffer, if the loop offers it and b lies in
// it, the chunk c.out starts with (c.mu held, nothing pending).
func (c *Conn) takeLoan(b []byte) bool {
	if !c.ln.sendInPlace || len(b) == 0 {
		return false // Write copies, as its doc says
	}
	lend := &c.l.lend
	o := lend.offer.Load()
	if o == nil {
		return false
	}
	// b must end where the delivered bytes end: later Writes append to
	// the chunk, that is into the buffer past b, and must not overwrite
	// delivered bytes the handler may still read.
	p, lo := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(o.base)
	if p < lo || p+uintptr(len(b)) != lo+uintptr(o.n) {
		return false // not the bytes being delivered, or not their tail
	}
	if lend.out.Load() >= lend.max || !lend.offer.CompareAndSwap(o, nil) {
		return false
	}
	lend.out.Add(1)
	lend.taken.Add(1)
	ch := c.ln.chunks.getLoan()
	ch.b = (*[outChunkSize]byte)(o.base)
	ch.loan.l, ch.loan.ev = c.l, o.ev
	c.out.lendFirst(ch, int(p-lo), len(b))
	return true
}

// getLoan returns a chunk header with its outLoan, for a loaned buffer.
func (op *outPool) getLoan() *outChunk {
	if c, ok := op.loans.Get().(*outChunk); ok {
		return c
	}
	return &outChunk{loan: &outLoan{}}
}

// putLoan gives a loaned chunk's buffer back to the kernel (on the loop)
// and pools its header.
func (op *outPool) putLoan(c *outChunk) {
	x := c.loan
	x.l.rcv.Release(&x.ev)
	x.l.lend.out.Add(-1)
	x.l, x.ev = nil, poller.Event{}
	c.b, c.next, c.last, c.since = nil, nil, nil, 0
	op.loans.Put(c)
}

// sendSlotReleased is told that a send of c's has ended in the kernel and
// its slot is released: a closed Conn's abandoned first chunk, kept for
// that send, is free now; a loaned one goes back to the kernel.
func (c *Conn) sendSlotReleased() {
	if c.phase() != phClosed {
		return
	}
	c.mu.Lock()
	if f := c.out.first; f != nil && f.loan != nil {
		c.out.reset(&c.ln.chunks)
	}
	c.mu.Unlock()
}
