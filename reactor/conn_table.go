//go:build linux

package reactor

import (
	"fmt"
	"math"

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
//	armed     the kernel's end         none      the generation moves on; the
//	                                             Conn's recvEnded, with what
//	                                             the kernel said
//	stopping  the kernel's end         none      the same, but ErrCanceled
//	                                             unless it was a socket error
//	                                             (whoever stopped it goes on)
//	armed     the Conn finishes        retired   poller Disarm, unless stopping;
//	stopping                                     counted Closed; the place is kept
//	retired   bytes                    retired   dropped (counted as discarded),
//	                                             the buffer goes back
//	retired   the kernel's end         free      the place is freed, its
//	                                             generation moves on
//	none      the Conn finishes        free      the same
//	none      an Event for the place   -         cannot come (a broken invariant:
//	free      (or one of an earlier              panic): the poller finds no
//	          generation)                        record for it and panics first
//
// So a receive's end reaches its Conn at most once (recvEnded, which
// clears rxArmed, or the retirement in finish, after which the end only
// frees the place), and a place is given to another Conn only after the
// kernel's end of the last receive armed there, in a new generation:
// nothing the kernel posts for a tag, nor a cancel it runs late, can
// reach a Conn or a receive that did not arm it.

// connPlace is one place in l.served: 16 bytes per Conn, where a packed
// pointer took 8 and the receive's slot 64. Places are not compacted (a
// Conn's place is its name), so the walks over them (the sweep,
// openConns) span the most Conns the loop has held at once: after a
// burst of 10,000, a walk looks at 10,000 places (about 4 ns each,
// BenchmarkSweepWalk) however few remain.
type connPlace struct {
	c   *Conn            // the Conn here (a retired one until the kernel's end); nil: free
	rec poller.TagRecord // the poller's record of c's receive's tag (Records)
	rx  rxBits
	// gen moves on at each receive's end and each time the place is
	// freed, and is in the tag (connTag): a cancel the kernel runs late
	// (one punted to a worker) names an earlier receive and finds
	// nothing, rather than the next receive here, the same Conn's or
	// the place's next Conn's. 8 bits: such a cancel would have to lag
	// 256 receives on one place to hit one, which would then end
	// ErrCanceled, after its bytes, and be armed again (readOn).
	gen uint8
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

// connTag is the kernel tag of the receive of the Conn at place i (index)
// in the place's life gen: CallerBit tells it from cancel's tags.
//
//	 63  62  61       32 31    24 23               0
//	+---+---+-----------+--------+------------------+
//	| 0 | 1 |     0     |  gen   |    index + 1     |
//	+---+---+-----------+--------+------------------+
func connTag(i int, gen uint8) uint64 {
	return cancel.CallerBit | uint64(gen)<<poller.TagIndexBits | uint64(i+1)
}

// tag returns the tag of the receive of c, which has a place.
func (c *Conn) tag() uint64 {
	return connTag(int(c.slot)-1, c.l.entry(c).gen)
}

// maxServed: a Conn's place must fit a tag's index bits.
const maxServed = 1<<poller.TagIndexBits - 1

// entry returns c's place; c must have one.
func (l *loop) entry(c *Conn) *connPlace {
	if c.slot <= 0 || int(c.slot) > l.hiServed || l.served.At(int(c.slot)-1).c != c {
		panic(fmt.Sprintf("reactor: conn fd %d is not at its place (%d) among its loop's Conns", c.fd, c.slot))
	}
	return l.served.At(int(c.slot) - 1)
}

// placeGenMask is where connTag puts a place's generation.
const placeGenMask = uint64(math.MaxUint8) << poller.TagIndexBits

// entryOf returns the place a Conn receive's tag names (and its index), or
// nil if the tag is not one (connTag's layout) or names no taken place in
// the generation it was made in (a late report).
func (l *loop) entryOf(tag uint64) (*connPlace, int) {
	i := int(tag&poller.TagIndexMask) - 1
	if tag&cancel.CallerBit == 0 || tag&^(cancel.CallerBit|placeGenMask|poller.TagIndexMask) != 0 || i < 0 || i >= l.hiServed {
		return nil, i
	}
	if e := l.served.At(i); e.c != nil && uint64(e.gen) == tag&placeGenMask>>poller.TagIndexBits {
		return e, i
	}
	return nil, i
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
		e := l.served.At(i)
		l.freeServed, e.free = e.free, 0
	} else {
		if l.hiServed >= maxServed {
			return fmt.Errorf("reactor: %d Conns on one loop: %w", l.hiServed, unix.EMFILE)
		}
		i = l.hiServed
		l.hiServed++
		l.served.Grow(l.hiServed)
	}
	l.served.At(i).c = c // the rest is zero, but for gen
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
	if e.rx&(rxArmed|rxStopping) == rxArmed {
		l.p.Disarm(c.tag())
	}
	c.slot = 0
	l.nServed--
	if e.rx&rxArmed != 0 {
		e.rx |= rxRetired
		l.closed.Add(1)
		l.outstanding.Add(^uint64(0))
		return
	}
	l.freePlace(i)
}

// freePlace frees place i, whose Conn finished and whose receive the
// kernel owes nothing, and moves its generation on.
func (l *loop) freePlace(i int) {
	e := l.served.At(i)
	*e = connPlace{gen: e.gen + 1, free: l.freeServed}
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
	l.armed.Add(1)
	if err := l.rcv.Recv(c.tag(), int(c.fd), !once); err != nil {
		l.failed.Add(1) // as a refused arm of a slot's is
		return err
	}
	e.rx = rxArmed
	if once {
		e.rx |= rxOnce
	}
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
		c.l.p.Disarm(c.tag())
	}
}

// warm loads the first line of each Conn a batch's receives are for,
// before any is served: at 1,000 connections each is out of the CPU's
// caches, and the loads of a loop that does nothing else overlap, where
// the same misses met inside each Event's handling wait one after another
// (received's first load was 13-16% of echod's user time there; with
// warm, 0.5%, and warm itself 5%). The sum is kept only so that the loads
// have a use.
func (l *loop) warm(evs []poller.Event) {
	var sum uint64
	for i := range evs {
		if e, _ := l.entryOf(evs[i].Tag); e != nil {
			sum += e.c.st.v.Load()
		}
	}
	l.warmed = sum
}

// connEvent is an Event for a Conn's receive (loop.handle).
func (l *loop) connEvent(ev *poller.Event) {
	e, i := l.entryOf(ev.Tag)
	if e == nil || e.rx&rxArmed == 0 {
		// The poller hands out Events only for tags whose record it
		// found (Record), which is armed only while the receive is: the
		// kernel posted past a request's end.
		panic(fmt.Sprintf("reactor: an Event for tag %#x, which names no armed receive (place %d): %v", ev.Tag, i, *ev))
	}
	if ev.HasBuf {
		lent := false
		if ev.N > 0 {
			lent = l.deliverLent(ev, e.c) // a retired Conn drops them
		}
		l.received.Add(1)
		if !lent {
			l.rcv.Release(ev)
		}
	}
	if ev.More {
		return // the receive goes on
	}
	rx, c := e.rx, e.c
	if rx&rxRetired != 0 {
		l.freePlace(i)
		return
	}
	e.rx = 0
	e.gen++ // the next receive here gets a tag of its own
	l.outstanding.Add(^uint64(0))
	var res Result
	switch {
	case ev.Canceled:
		res.Err = ErrCanceled
		l.canceled.Add(1)
	case ev.Errno != 0 && ev.Errno != unix.ENOBUFS:
		// A socket's error is passed on even to a receive that was
		// stopped: the error was the receive's to take, and a reset
		// must not pass for a clean end.
		res.Err = ev.Errno
		l.failed.Add(1)
	case rx&rxStopping != 0:
		// Stopped, and ended before the stop reached it: at the peer's
		// EOF (which the next read finds again), for want of buffers,
		// or with its buffer's end. Whoever stopped it decides what
		// comes next, as for any stop (recvEnded, readOn): a pause,
		// Shutdown's read or a drain must not be overtaken by an EOF
		// taken on its way (OnEOF, a close).
		res.Err = ErrCanceled
		l.canceled.Add(1)
	case ev.Errno != 0: // ENOBUFS
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
		if e, _ := l.entryOf(tag); e != nil {
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
		if e := l.served.At(i); e.rx&rxArmed != 0 {
			f(connTag(i, e.gen))
		}
	}
}
