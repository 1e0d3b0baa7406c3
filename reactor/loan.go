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
// Write of the delivered bytes' tail, with nothing pending, takes it (its
// send goes through the ring; a Write whose direct write(2) found the
// socket full at its first byte takes it too, and on a loop with a ring
// its flush goes through the ring as well), and the buffer goes back to the kernel when
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
// The offer is read by Write, which any goroutine may call, so a Write
// reads nothing but atomics until it has claimed the offer: a generation
// and a buffer id in one word, and the delivered bytes' bounds beside it.
// Once its compare-and-swap took that word, the loop is still in that
// delivery (its Swap would have failed the CAS), so the buffer's Event and
// address, which the loop wrote before publishing the word, stay put until
// the buffer goes back.
//
//	who    step                                         why
//	-----  -------------------------------------------  ----------------------
//	loop   slot[id], lo, hi; offer.Store(gen|id)         before the handler
//	       → handler → Write: bounds check, then         runs; a Write takes
//	       CAS(gen|id, 0); slot[id] becomes c's first    it once, and only the
//	       chunk (Conn's mu held)                        delivered bytes' tail
//	loop   offer.Swap(0) == 0: taken, no Release          the handler returned
//	loop   the chunk's put (consume, reset) → Release     the send is done with it
type lender struct {
	offer  atomic.Uint64  // gen<<16 | buffer id of the receive being delivered; 0 = none
	lo, hi atomic.Uintptr // the delivered bytes' bounds while offered
	gen    uint64         // loop-owned: the last offer's generation
	slots  []lentSlot     // loop-owned, by buffer id; written before the offer is published
	// out: loans taken and not yet released (taken by a Write, released
	// on the loop); max: the cap (0: this loop lends nothing).
	out atomic.Int32
	max int32
	// taken counts the loans ever taken (Stats.SentInPlace).
	taken atomic.Uint64
}

// lentSlot is what the loop knows of a buffer it offers.
type lentSlot struct {
	ev   poller.Event   // the receive's, for Release
	base unsafe.Pointer // the buffer's first byte (the bytes start there: Off 0)
}

// outLoan marks an outChunk whose bytes are a loaned receive buffer.
type outLoan struct {
	l  *loop
	ev poller.Event
}

// lendMin is the fewest received bytes whose buffer is offered. Below it
// copying costs less than lending (a chunk header from a pool, a buffer's
// return on the send's end), and a lent buffer holds 16 KiB of the ring
// for a few bytes: 1,000 Conns echoing 64 B with every buffer lent spent
// 1.06-1.5× the CPU a message of copying (6 pairs, median 1.11), the
// receives short of buffers.
const lendMin = outChunkSize / 4

// setupLoans decides whether l's receives can be lent: whole buffers (not
// incremental pieces) of exactly an output chunk's size.
func (l *loop) setupLoans(bufs, size int) {
	if l.rcv == nil || l.rcv.Incremental() || size != outChunkSize || bufs > 1<<16 {
		return
	}
	l.lend.max = int32(bufs / 4)
	l.lend.slots = make([]lentSlot, bufs)
}

// deliverLent hands c the bytes ev's receive brought, offering their
// buffer while it does if c's Listener allows it (its handler promises to
// leave written bytes alone), and reports whether a Write took it: then
// the buffer is that Write's Conn's, and the loop must not Release it.
func (l *loop) deliverLent(ev *poller.Event, c *Conn) (taken bool) {
	b := l.rcv.Bytes(ev)
	lend := &l.lend
	if lend.max == 0 || len(b) < lendMin || ev.Off != 0 || !c.ln.sendInPlace || int(ev.Buf) >= len(lend.slots) || c.phase() != phOpen {
		c.received(b)
		return false
	}
	base := unsafe.SliceData(b)
	lend.slots[ev.Buf] = lentSlot{ev: *ev, base: unsafe.Pointer(base)}
	lend.lo.Store(uintptr(unsafe.Pointer(base)))
	lend.hi.Store(uintptr(unsafe.Pointer(base)) + uintptr(len(b)))
	// 48 bits of generation, never 0: the word 0 means "no offer" (or
	// "taken"), and must not name buffer 0 after 2^48 offers.
	lend.gen = (lend.gen + 1) & (1<<48 - 1)
	if lend.gen == 0 {
		lend.gen = 1
	}
	lend.offer.Store(lend.gen<<16 | uint64(ev.Buf))
	c.received(b)
	return lend.offer.Swap(0) == 0
}

// takeLoan makes the receive buffer the loop offers the chunk c.out starts
// with, if b is the tail of the bytes being delivered (c.mu held, nothing
// pending). b must end where the delivered bytes end: later Writes append
// to the chunk, that is into the buffer past b, and must not overwrite
// delivered bytes the handler may still read.
func (c *Conn) takeLoan(b []byte) bool {
	lend := &c.l.lend
	v := lend.offer.Load()
	if v == 0 || len(b) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo, hi := lend.lo.Load(), lend.hi.Load()
	if p < lo || p+uintptr(len(b)) != hi {
		return false // not the bytes being delivered, or not their tail
	}
	if lend.out.Load() >= lend.max || !lend.offer.CompareAndSwap(v, 0) {
		return false
	}
	// Claimed: lo and hi were v's (the loop publishes new ones only
	// after its Swap, which would have failed the CAS), and slot is
	// stable until the buffer goes back.
	slot := &lend.slots[uint16(v)]
	lend.out.Add(1)
	lend.taken.Add(1)
	ch := c.ln.chunks.getLoan()
	ch.b = (*[outChunkSize]byte)(slot.base)
	ch.loan.l, ch.loan.ev = c.l, slot.ev
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
