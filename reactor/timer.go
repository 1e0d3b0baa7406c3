//go:build linux

package reactor

import (
	"fmt"
	"time"

	"github.com/oneshot-io/oneshot/cancel"
	"github.com/oneshot-io/oneshot/internal/chunked"
)

// timerEntry is one deadline on a loop's heap: 16 bytes, one for every
// request with a deadline and every Conn whose output stalls under a
// WriteTimeout or which is closing (idle and read timeouts are the loop's
// sweep's: see below).
// It holds no pointer: a Conn is named by its place among its loop's
// Conns (Conn.slot, which it keeps from open to finish), so the heap is
// nothing for the garbage collector to scan, and 8 bytes less than a
// pointer beside the tag. A Conn keeps one entry at a
// time, and removes it before it leaves l.served. A listening socket's
// accept backoff, rare and at most one per socket, is not here but in
// l.backoffs.
type timerEntry struct {
	when int64  // nanotime()
	ref  uint64 // connRef|Conn.slot, or a request's tag (bit 63 clear)
}

// connRef marks a timerEntry's ref as a Conn's place in l.served; a
// cancel tag never has bit 63 set.
const connRef uint64 = 1 << 63

// connEntry is c's entry due at when.
func connEntry(c *Conn, when int64) timerEntry {
	if c.slot == 0 {
		panic(fmt.Sprintf("reactor: a deadline for conn fd %d, which is not among its loop's Conns", c.fd))
	}
	return timerEntry{when: when, ref: connRef | uint64(c.slot)}
}

// timerHeap is a binary min-heap of deadlines, owned by the loop goroutine.
// A request deadline's position is kept in its payload (reqData.timer, index
// + 1) so that delivery removes it at once: a server arming at a high rate
// with long deadlines does not pile up entries for requests long finished.
// It is hand-rolled rather than container/heap so that a push does not box
// the entry into an interface (an allocation per deadline).
type timerHeap struct {
	es    chunked.Array[timerEntry] // [0, n): the heap
	n     int
	table *cancel.Table[reqData]    // constant: finds a request deadline's slot by its tag
	conns *chunked.Array[connPlace] // constant: the loop's l.served, where a Conn's entry finds it
}

// conn returns the Conn e is for, or nil for a request deadline.
func (h *timerHeap) conn(e *timerEntry) *Conn {
	if e.ref&connRef == 0 {
		return nil
	}
	return h.conns.At(int(e.ref&^connRef) - 1).c
}

// moved records that e is now at index i (-1: removed) with its owner.
func (h *timerHeap) moved(e *timerEntry, i int) {
	if c := h.conn(e); c != nil {
		c.timerMoved(int32(i + 1))
		return
	}
	r, ok := h.table.Lookup(e.ref)
	if !ok {
		// Delivery removes a request's entry before its slot is released.
		panic("reactor: a request deadline outlived its request")
	}
	r.Data().timer = int32(i + 1)
}

func (h *timerHeap) set(i int, e timerEntry) {
	*h.es.At(i) = e
	h.moved(&e, i)
}

func (h *timerHeap) add(e timerEntry) {
	h.es.Grow(h.n + 1)
	*h.es.At(h.n) = e
	h.n++
	h.up(h.n - 1)
}

func (h *timerHeap) up(i int) {
	e := *h.es.At(i)
	for i > 0 {
		p := (i - 1) / 2
		pe := h.es.At(p)
		if pe.when <= e.when {
			break
		}
		h.set(i, *pe)
		i = p
	}
	h.set(i, e)
}

func (h *timerHeap) down(i int) {
	e := *h.es.At(i)
	for {
		l := 2*i + 1
		if l >= h.n {
			break
		}
		m := l
		if r := l + 1; r < h.n && h.es.At(r).when < h.es.At(l).when {
			m = r
		}
		me := h.es.At(m)
		if e.when <= me.when {
			break
		}
		h.set(i, *me)
		i = m
	}
	h.set(i, e)
}

// remove takes out the entry at i.
func (h *timerHeap) remove(i int) timerEntry {
	e := *h.es.At(i)
	last := h.n - 1
	if i != last {
		*h.es.At(i) = *h.es.At(last)
	}
	*h.es.At(last) = timerEntry{}
	h.n = last
	if i < last {
		h.down(i)
		h.up(i)
	}
	h.moved(&e, -1)
	return e
}

// at returns the entry at i.
func (h *timerHeap) at(i int) *timerEntry { return h.es.At(i) }

// len returns the number of entries.
func (h *timerHeap) len() int { return h.n }

// next returns the earliest deadline, or -1 when there is none.
func (h *timerHeap) next() int64 {
	if h.n == 0 {
		return -1
	}
	return h.es.At(0).when
}

// popExpired removes and returns the earliest entry if it is due at now.
func (h *timerHeap) popExpired(now int64) (timerEntry, bool) {
	if h.n == 0 || h.es.At(0).when > now {
		return timerEntry{}, false
	}
	return h.remove(0), true
}

func (l *loop) addTimer(e timerEntry) { l.timers.add(e) }

// nextTimer returns the earliest deadline of the heap and the accept
// backoffs, or -1 when there is none.
func (l *loop) nextTimer() int64 {
	next := l.timers.next()
	if t := l.sweepAt; t != 0 && (next < 0 || t < next) {
		next = t
	}
	for _, s := range l.backoffs {
		if t := s.resumeAt; t != 0 && (next < 0 || t < next) {
			next = t
		}
	}
	return next
}

// runBackoffs re-arms the listening sockets whose accept backoff ended by
// now, and drops the ones that ended otherwise (the socket stopped).
func (l *loop) runBackoffs(now int64) {
	keep := l.backoffs[:0]
	var due []*lsock
	for _, s := range l.backoffs {
		switch {
		case s.resumeAt == 0:
		case s.resumeAt <= now:
			s.resumeAt = 0
			due = append(due, s)
		default:
			keep = append(keep, s)
		}
	}
	clear(l.backoffs[len(keep):])
	l.backoffs = keep
	for _, s := range due {
		s.arm() // may back off again, appending to l.backoffs
	}
}

// runTimers fires every deadline due at now.
func (l *loop) runTimers(now int64) {
	if len(l.backoffs) != 0 {
		l.runBackoffs(now)
	}
	if l.sweepAt != 0 && now >= l.sweepAt {
		l.sweep(now)
	}
	for {
		e, ok := l.timers.popExpired(now)
		if !ok {
			return
		}
		if c := l.timers.conn(&e); c != nil {
			l.enterUser() // a Conn's deadline calls OnClose
			c.fire(now)
			continue
		}
		// A request deadline: one more canceller, deciding Closed with
		// os.ErrDeadlineExceeded as its meaning. Delivery removes the
		// entry, so h is live here; a Cancel may have won meanwhile.
		h := l.reqOf(e.ref)
		if !h.State().Cancellable() {
			continue
		}
		h.Data().why = whyDeadline
		l.act(h, h.Close())
	}
}

// The sweep watches the idle and read deadlines of a loop's Conns, so that
// an idle Conn holds no heap entry (16 bytes each, and a heap operation per
// Conn opened and closed): one deadline per loop, sweepAt, due at the
// earliest of those deadlines, walks l.served when it passes, closes the
// Conns whose deadline passed and sets itself to the earliest of the rest.
// Its walks are spaced at least sweepSpacing of the shortest timeout
// apart, so a Conn's idle or read timeout closes it at most 1/64 of that
// timeout late (a 5-minute idle timeout, about 5 seconds), and Conns whose
// deadlines pass one after another cost a walk per spacing, not one each.
const (
	sweepSpacing = 64
	minSweepGap  = int64(100 * time.Microsecond)
)

// sweepBy makes the sweep due no later than when (a Conn's idle or read
// deadline).
func (l *loop) sweepBy(when int64) {
	if l.sweepAt == 0 || when < l.sweepAt {
		l.sweepAt = when
	}
}

// sweep closes the Conns whose idle or read deadline passed by now and
// sets the next sweep.
func (l *loop) sweep(now int64) {
	// Cleared first and kept at the end if lower: a sweepBy made during
	// the walk (a Conn that fire did not close schedules again) is never
	// lost, whichever Conn it was for.
	l.sweepAt = 0
	next, gap := int64(0), int64(-1)
	for i := 0; i < l.hiServed; i++ {
		c := l.served.At(i).c
		if c == nil || c.slot != int32(i+1) {
			continue // a free place, or a retired one (conn_table.go)
		}
		when, kind := c.sweptDeadline()
		if kind != dlNone && now >= when {
			l.enterUser() // a Conn's deadline calls OnClose
			c.fire(now)
			if c.slot == 0 {
				continue // fire closed it
			}
			when, kind = c.sweptDeadline()
		}
		if kind != dlNone {
			if next == 0 || when < next {
				next = when
			}
			t := c.ln.idle
			if kind == dlRead {
				t = c.ln.readTimeout
			}
			if g := int64(t) / sweepSpacing; gap < 0 || g < gap {
				gap = g
			}
		}
	}
	if next != 0 {
		// At least minSweepGap: a deadline that fire left passed (none
		// should) must not make the loop sweep turn after turn.
		next = max(next, now+max(gap, minSweepGap))
	}
	if l.sweepAt == 0 || next != 0 && next < l.sweepAt {
		l.sweepAt = next
	}
}
