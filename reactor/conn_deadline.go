//go:build linux

package reactor

import "fmt"

// A Conn's idle and read deadlines are watched by its loop's sweep
// (loop.sweep): one deadline for the whole loop, due at the earliest of its
// Conns' idle and read deadlines, which walks them when it fires. So an
// idle Conn holds no timer entry, and activity touches nothing but a
// timestamp. Its other deadlines (the write timeout while output stalls,
// the drain bound, the linger's next look), which last only while it
// closes or backs up, are one timer on the loop's heap, due at the earliest
// of them and recomputed when it fires.

// The deadlines a Conn can pass.
const (
	dlNone = iota
	dlIdle
	dlRead
	dlWrite
	dlDrain
	dlLinger
)

// deadline returns the earliest of c's deadlines (idle, read, write, drain
// bound, linger) and which it is; 0, dlNone when none applies.
func (c *Conn) deadline() (int64, int) {
	when, kind := c.sweptDeadline()
	if t, k := c.heapDeadline(); k != dlNone && (kind == dlNone || t < when) {
		when, kind = t, k
	}
	return when, kind
}

// sweptDeadline returns the earlier of c's idle and read deadlines, the
// ones its loop's sweep watches, and which it is; 0, dlNone when neither
// applies.
func (c *Conn) sweptDeadline() (int64, int) {
	when, kind := int64(0), dlNone
	ln := c.ln
	p := c.phase()
	if p.writable() {
		if ln.idle > 0 {
			when, kind = c.lastActive.Load()+int64(ln.idle), dlIdle
		}
		if ln.readTimeout > 0 && p == phOpen {
			if t := c.lastRead + int64(ln.readTimeout); kind == dlNone || t < when {
				when, kind = t, dlRead
			}
		}
	}
	return when, kind
}

// heapDeadline returns the earliest of c's deadlines kept on the heap
// (write, drain bound, linger) and which it is; 0, dlNone when none applies.
func (c *Conn) heapDeadline() (int64, int) {
	when, kind := int64(0), dlNone
	consider := func(t int64, k int) {
		if when == 0 || t < when {
			when, kind = t, k
		}
	}
	ln := c.ln
	p := c.phase()
	if ln.writeTimeout > 0 && c.Pending() > 0 {
		c.mu.Lock()
		pending, since := c.out.len(), c.out.since()
		c.mu.Unlock()
		if pending > 0 {
			consider(since+int64(ln.writeTimeout), dlWrite)
		}
	}
	if c.drainBy != 0 && p != phLingering {
		consider(c.drainBy, dlDrain)
	}
	if x := c.rare.Load(); x != nil && x.lingerNext != 0 {
		consider(x.lingerNext, dlLinger)
	}
	return when, kind
}

// deadlineErr says which deadline closed c.
func (c *Conn) deadlineErr(kind int) error {
	switch kind {
	case dlIdle:
		return fmt.Errorf("reactor: no bytes either way for %v: %w", c.ln.idle, ErrIdleTimeout)
	case dlRead:
		return fmt.Errorf("reactor: no bytes read for %v: %w", c.ln.readTimeout, errDeadline)
	case dlWrite:
		return fmt.Errorf("reactor: output stalled for %v: %w", c.ln.writeTimeout, errDeadline)
	}
	return fmt.Errorf("reactor: flush did not finish within %v: %w", c.ln.closeTimeout, ErrClosed)
}

// schedule makes sure c's deadlines are watched: its loop's sweep is due
// no later than its idle or read deadline, and its heap entry fires by the
// earliest of the others. An entry already due no later stays (it
// re-evaluates when it fires); a later one is replaced, so a Conn holds at
// most one heap entry.
func (c *Conn) schedule() {
	if c.slot == 0 {
		return // closed (finish): no deadline can be told to it
	}
	if when, kind := c.sweptDeadline(); kind != dlNone {
		c.l.sweepBy(when)
	}
	when, _ := c.heapDeadline()
	if at := c.timerAt(); when == 0 || (at != 0 && at <= when) {
		return
	}
	c.unschedule()
	c.l.addTimer(connEntry(c, when))
}

// unschedule takes c's entry, if any, off the heap.
func (c *Conn) unschedule() {
	if c.timerIdx != 0 {
		c.l.timers.remove(int(c.timerIdx - 1))
	}
}

// timerAt is when c's heap entry fires; 0 = none. The heap keeps the
// entry's place in c.timerIdx, so c need not keep a copy of its time.
func (c *Conn) timerAt() int64 {
	if c.timerIdx == 0 {
		return 0
	}
	return c.l.timers.at(int(c.timerIdx - 1)).when
}

// timerMoved keeps c's record of its entry's place in the heap.
func (c *Conn) timerMoved(idx int32) { c.timerIdx = idx }

// fire is c's timer expiring, or the sweep finding c's idle or read
// deadline passed: close c if a deadline passed, else wait for the next
// one. The entry that fires is c's only one: schedule and finish
// take the one before off the heap, so c needs no sequence number to
// recognise a superseded entry.
func (c *Conn) fire(now int64) {
	if c.phase() == phClosed {
		return
	}
	if when, kind := c.deadline(); kind != dlNone && now >= when {
		if kind == dlLinger {
			c.more().lingerNext = 0
			c.lingerTimer(now)
			return
		}
		c.finish(c.deadlineErr(kind))
		return
	}
	c.schedule()
}
