//go:build linux

package reactor

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/cancel"
	"github.com/oneshot-io/oneshot/poller"
)

// The loop's table of its Conns (l.served) and their receives.
//
// A Conn has one place in the table (Conn.slot, index+1) from open to
// finish, and keeps it: its timer entry names it by that place, and so
// does the tag of its receive through the ring (connTag). That receive is
// not a cancel request: only the loop arms it, stops it and sees it end,
// so it needs no slot of its own (64 bytes, as much as half a Conn), and
// the entry keeps what a slot would have: the poller's record of the tag
// (poller.Options.Records) and the receive's state:
//
//	state     what happens             next      what the loop does
//	--------  -----------------------  --------  ---------------------------------
//	none      armRecv                  armed     poller Recv (refused: the Conn
//	                                             closes with the error, none)
//	armed     bytes                    armed     the Conn takes them (its phase
//	stopping                           stopping  decides how), the buffer goes back
//	armed     stopRecv                 stopping  poller Disarm
//	armed     the kernel's end         none      the Conn's recvEnded, with what
//	stopping                                     the kernel said (ECANCELED: the
//	                                             stop, ErrCanceled)
//	armed     the Conn finishes        retired   poller Disarm, unless stopping;
//	stopping                                     counted Closed; the place is kept
//	retired   bytes                    retired   dropped (counted as discarded),
//	                                             the buffer goes back
//	retired   the kernel's end         free      the place is freed
//	none      the Conn finishes        free      the place is freed
//	free      bytes or an end          free      stale: counted, the buffer goes back
//
// So a receive's end reaches its Conn at most once (recvEnded, or the
// retirement in finish, never both: rxArmed is cleared by whichever comes
// first), and a place, and so a tag, is given to another Conn only after
// the kernel's end of the last receive armed with it: nothing the kernel
// posts for a tag can reach a Conn that did not arm it.

// connPlace is one place in l.served: 16 bytes per Conn, where a packed
// pointer took 8 and the receive's slot 64.
type connPlace struct {
	c   *Conn            // the Conn here (a retired one until the kernel's end); nil: free
	rec poller.TagRecord // the poller's record of c's receive's tag (Records)
	rx  rxBits
	// free: while free, the next free place's index+1 (0 ends the list).
	free uint32
}

// rxBits is a Conn's receive's state (see the table above).
type rxBits uint8

const (
	rxArmed    rxBits = 1 << iota // armed: the kernel owes its end, which the Conn waits for
	rxOnce                        // with rxArmed: a receive of one buffer (armRecv)
	rxStopping                    // with rxArmed: stopRecv disarmed it
	rxRetired                     // the Conn finished; the kernel still owes the end
)

// connTag is the kernel tag of the receive of the Conn at place i (index):
// CallerBit tells it from cancel's tags.
func connTag(i int) uint64 { return cancel.CallerBit | uint64(i+1) }

// maxServed: a Conn's place must fit a tag's index bits.
const maxServed = 1<<poller.TagIndexBits - 1

// entry returns c's place; c must have one.
func (l *loop) entry(c *Conn) *connPlace {
	e := l.served.At(int(c.slot) - 1)
	if c.slot == 0 || e.c != c {
		panic(fmt.Sprintf("reactor: conn fd %d is not at its place (%d) among its loop's Conns", c.fd, c.slot))
	}
	return e
}

// entryOf returns the place a Conn receive's tag names, or nil if it names
// no taken place.
func (l *loop) entryOf(tag uint64) *connPlace {
	i := int(tag&poller.TagIndexMask) - 1
	if tag&^(cancel.CallerBit|poller.TagIndexMask) != 0 || i < 0 || i >= l.hiServed {
		return nil
	}
	if e := l.served.At(i); e.c != nil {
		return e
	}
	return nil
}

// addConn gives c a place in l.served (Conn.open): a freed one if there is
// one, else the next. It fails only past maxServed Conns on the loop.
//
// Invariant: c.slot != 0 iff c is open here, at place c.slot-1, whose
// entry's c is c; a place is free (c nil, on the free list) or taken, and
// a retired one (its Conn finished, the kernel owing its receive's end)
// stays taken with c.slot already 0.
func (l *loop) addConn(c *Conn) error {
	i := int(l.freeServed) - 1
	if i >= 0 {
		l.freeServed = l.served.At(i).free
	} else {
		if l.hiServed >= maxServed {
			return fmt.Errorf("reactor: %d Conns on one loop: %w", l.hiServed, unix.EMFILE)
		}
		i = l.hiServed
		l.hiServed++
		l.served.Grow(l.hiServed)
	}
	*l.served.At(i) = connPlace{c: c}
	l.nServed++
	c.slot = int32(i + 1)
	return nil
}

// dropConn takes c out of the open Conns (Conn.finish). Its place is
// freed, unless its receive is armed: the receive retires (its end is
// counted Closed now, and the place is kept until the kernel's end).
func (l *loop) dropConn(c *Conn) {
	if c.timerIdx != 0 {
		// Its entry names it by its place, about to be another's.
		panic(fmt.Sprintf("reactor: conn fd %d leaves its loop's Conns with a deadline on the heap", c.fd))
	}
	e := l.entry(c)
	i := int(c.slot) - 1
	c.slot = 0
	l.nServed--
	if e.rx&rxArmed != 0 {
		if e.rx&rxStopping == 0 {
			l.p.Disarm(connTag(i))
		}
		e.rx |= rxRetired
		l.closed.Add(1)
		l.outstanding.Add(^uint64(0))
		return
	}
	l.freePlace(i)
}

func (l *loop) freePlace(i int) {
	*l.served.At(i) = connPlace{free: l.freeServed}
	l.freeServed = uint32(i + 1)
}

// openConns returns the open Conns, in a copy: closing them frees places.
func (l *loop) openConns() []*Conn {
	cs := make([]*Conn, 0, l.nServed)
	for i := 0; i < l.hiServed; i++ {
		if c := l.served.At(i).c; c != nil && c.slot == int32(i+1) {
			cs = append(cs, c)
		}
	}
	return cs
}

// armRecv arms c's receive through the ring: multishot, or once (one
// buffer) when c's output backs up (see take).
func (c *Conn) armRecv(once bool) error {
	l := c.l
	e := l.entry(c)
	if e.rx != 0 {
		panic(fmt.Sprintf("reactor: conn fd %d arms a receive with one in flight (%#x)", c.fd, e.rx))
	}
	if err := l.rcv.Recv(connTag(int(c.slot)-1), int(c.fd), !once); err != nil {
		return err
	}
	e.rx = rxArmed
	if once {
		e.rx |= rxOnce
	}
	l.armed.Add(1)
	l.outstanding.Add(1)
	return nil
}

// receiving reports whether c has a receive armed through the ring.
func (c *Conn) receiving() bool {
	return c.slot != 0 && c.l.entry(c).rx&rxArmed != 0
}

// receivingOnce reports whether c's armed receive takes one buffer only.
func (c *Conn) receivingOnce() bool { return c.l.entry(c).rx&rxOnce != 0 }

// stopRecv stops c's receive, if one is armed; its end comes later
// (recvEnded).
func (c *Conn) stopRecv() {
	if !c.receiving() {
		return
	}
	e := c.l.entry(c)
	if e.rx&rxStopping == 0 {
		e.rx |= rxStopping
		c.l.p.Disarm(connTag(int(c.slot) - 1))
	}
}

// connEvent is an Event for a Conn's receive (loop.handle).
func (l *loop) connEvent(ev *poller.Event) {
	e := l.entryOf(ev.Tag)
	if ev.HasBuf {
		if e != nil && e.rx&rxArmed != 0 && ev.N > 0 {
			e.c.received(l.rcv.Bytes(ev)) // a retired Conn drops them
		}
		l.received.Add(1)
		l.rcv.Release(ev)
	}
	if e == nil || e.rx&rxArmed == 0 {
		l.stale.Add(1) // a broken invariant: see the table
		return
	}
	if ev.More {
		return // the receive goes on
	}
	rx, c := e.rx, e.c
	if rx&rxRetired != 0 {
		l.freePlace(int(ev.Tag&poller.TagIndexMask) - 1)
		return
	}
	e.rx = 0
	l.outstanding.Add(^uint64(0))
	var res Result
	switch {
	case ev.Canceled:
		res.Err = ErrCanceled
		l.canceled.Add(1)
	case ev.Errno != 0:
		res.Err = ev.Errno
		l.failed.Add(1)
	case ev.N == 0:
		res.Events = evEOF // a receive ends with 0 bytes at the peer's EOF
		l.ready.Add(1)
	default:
		l.ready.Add(1)
	}
	l.enterUser()
	c.recvEnded(res)
}

// Record is poller.Records' lookup: the poller's record of tag, kept in
// its request's slot (reqData.pr) or, for a Conn's receive, in its place
// (connPlace.rec), while tag names a live request or a taken place. A
// record is armed only while its slot owes the kernel's end, or its
// place's receive is armed: the poller arms it in book, after every
// refusal (which the loop Steals, clearing the debt, or which armRecv
// returns before marking the receive armed) and before the kernel can
// post, and drops it before it hands out the tag's last Event, which the
// loop must see before the slot is released or the place freed. So a tag
// the kernel may still post for always finds its record, and a released
// slot (Release zeroes it) or a freed place never holds an armed one. A
// slot's miss counts in the table's StaleLookups, as a late kernel report
// does.
func (l *loop) Record(tag uint64) *poller.TagRecord {
	if tag&cancel.CallerBit != 0 {
		if e := l.entryOf(tag); e != nil {
			return &e.rec
		}
		return nil
	}
	h, ok := l.table.Lookup(tag)
	if !ok {
		return nil
	}
	return &h.Data().pr
}

// Armed is poller.Records' walk, for the poller's Close: the tag of every
// request whose slot owes the kernel's end, which an armed record implies
// (see Record; the poller keeps those whose record is armed), and of every
// Conn receive armed. A slot that owes nothing may be another goroutine's,
// retiring a request the loop never took (Reactor.submit), so its data is
// not the loop's to read.
func (l *loop) Armed(f func(tag uint64)) {
	l.table.Range(func(h reqHandle, st cancel.State) bool {
		if st.Owes() {
			f(h.Tag())
		}
		return true
	})
	for i := 0; i < l.hiServed; i++ {
		if l.served.At(i).rx&rxArmed != 0 {
			f(connTag(i))
		}
	}
}
