//go:build linux

package reactor

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// A Conn on a loop with a receive path (io_uring, Config.IO) reads
// through one multishot RECV: the kernel reads the socket when data
// arrives, into a buffer the loop lent it, and the loop hands the bytes to
// c.received, then takes the buffer back. The receive is c's own, not a
// cancel request (conn_table.go draws its states); it lives until the
// kernel ends it, which it does at the peer's EOF, on an error, when
// every buffer was lent (ENOBUFS), at its own discretion, or when the Conn
// stops it; and a Conn never has two reads in flight, so bytes keep their
// order.
//
//	the receive ...          | in phase   | the Conn
//	-------------------------+------------+----------------------------------
//	brings bytes             | open       | delivers them (OnData); past
//	                         |            | MaxPending: paused, receive stopped
//	                         | paused     | holds a copy (bytes the kernel had
//	                         |            | taken before the stop reached it),
//	                         |            | delivered first when reading resumes
//	                         | later ones | drops them, counted as discarded
//	ends at EOF              | open       | the peer's EOF, as a read of 0
//	                         | paused     | held: seen after the held bytes
//	ends (kernel, or stopped)| open       | arms the next receive (Shutdown:
//	                         |            | reads what it found received)
//	ends with ENOBUFS        | open       | arms the next receive; starved
//	                         |            | again before any bytes came:
//	                         |            | reads once after a poll
//	ends with an error       | any        | closes with it
//
// Stopping (stopRecv) disarms it in the kernel and waits for its end: the
// bytes it raced come first, the end last.

// heldInput is what a paused Conn's receive brought after the pause.
type heldInput struct {
	b   []byte
	eof bool // the receive then ended at the peer's EOF
}

// heldIn returns c's held input, made on first use.
func (c *Conn) heldIn() *heldInput {
	x := c.more()
	if x.held == nil {
		x.held = &heldInput{}
	}
	return x.held
}

// received takes bytes c's receive brought (the loop; b is the loop's
// buffer until this returns).
func (c *Conn) received(b []byte) {
	if c.st.has(lfStarved) {
		c.st.set(lfStarved, false)
	}
	switch c.phase() {
	case phOpen:
		c.l.enterUser()
		c.take(b)
	case phPaused:
		h := c.heldIn()
		h.b = append(h.b, b...)
	default:
		// Reading stopped (draining, lingering, closed): the linger drops
		// what the peer still sends, and so does this.
		c.ln.bytesDiscarded.Add(uint64(len(b)))
	}
}

// take delivers a chunk read for c, as readSome does, and pauses reading
// when the output backlog passes MaxPending.
func (c *Conn) take(b []byte) {
	now := c.l.now // the bytes came before it (loop.now)
	if c.ln.readTimeout > 0 && now > c.lastRead {
		c.lastRead = now // on the Conn's second line (Conn)
	}
	c.stampActive(now)
	c.ln.bytesIn.Add(uint64(len(b)))
	// A send (or Out poll) still in flight from before this chunk means
	// the socket did not take the last output at once: it backs up. (The
	// send this call's Writes queue says nothing yet: through the ring,
	// output is pending until the turn's enter has sent it.)
	waiting := c.wr != 0
	c.callData(b)
	if c.phase() != phOpen || c.Pending() == 0 {
		return
	}
	if c.Pending() > c.ln.maxPending {
		c.pause()
		c.stopRecv()
		return
	}
	if !waiting {
		return
	}
	// The output backs up: until it drains, receive a buffer at a time
	// (armRead), so that a pause finds at most one buffer in flight to
	// hold. A multishot receive went on taking the socket's bytes until
	// its stop reached the kernel: a peer that never reads had megabytes
	// held per Conn.
	if !c.st.has(lfBackedUp) {
		c.st.set(lfBackedUp, true)
	}
	if c.receiving() && !c.receivingOnce() {
		c.stopRecv()
	}
}

// reading reports whether c has a read in flight: a receive through the
// ring, or a readiness poll (c.rd).
func (c *Conn) reading() bool { return c.rd != 0 || c.receiving() }

// recvEnded is c's receive ending (see the table above).
func (c *Conn) recvEnded(res Result) {
	switch {
	case res.Err == nil && res.Events&evEOF != 0:
		c.recvEOF()
	case res.Err == nil, errors.Is(res.Err, ErrCanceled):
		c.readOn()
	case errors.Is(res.Err, unix.ENOBUFS):
		// Every buffer was lent out, to the Conns of this turn; the
		// bytes wait in the socket. The receive is armed again at once:
		// its SQE goes to the kernel in the turn's one enter, by when
		// each of the turn's Events has given its buffer back, and the
		// enter issues SQEs before it runs the task work that hands
		// buffers to other receives. A poll and a read(2) a message, as
		// every starved receive once cost, made a loop that fell
		// behind dearer still (echod saturated at 1,000 × 64 B: 0.6
		// system calls a message, against 0.01 with buffers consumed
		// incrementally, which did not run out). A Conn starved again
		// before any bytes came reads once after a poll, so it cannot
		// starve for good.
		c.l.nobufs.Add(1)
		if c.st.has(lfStarved) {
			c.st.set(lfStarved, false)
			c.st.set(lfPollOnce, true)
			c.l.recvPolled.Add(1)
		} else {
			c.st.set(lfStarved, true)
		}
		c.readOn()
	default:
		var errno unix.Errno
		if errors.As(res.Err, &errno) {
			res.Err = fmt.Errorf("reactor: read: %w", errno)
		}
		c.finish(res.Err)
	}
}

func (c *Conn) recvEOF() {
	switch c.phase() {
	case phOpen:
		c.sawEOF()
	case phPaused:
		c.heldIn().eof = true
	case phLingering:
		c.st.set(lfPeerEOF, true)
		c.finish(c.closeReason())
	default:
		c.st.set(lfPeerEOF, true) // a drain then closes without lingering
	}
}

// readOn goes on reading once a receive ended without EOF or error.
func (c *Conn) readOn() {
	switch c.phase() {
	case phOpen:
		if c.shutAsked() {
			c.shutdownRead()
			return
		}
		c.armRead()
	case phLingering:
		c.discard()
	}
	// Paused: resuming arms the next read. Draining: linger reads.
}

// takeHeld delivers what the receive brought while c was paused, a read
// buffer at a time as readSome would, then the EOF that followed it, if
// any. Bytes left when the backlog pauses c again stay held. It reports
// whether c is still open.
func (c *Conn) takeHeld() bool {
	x := c.rare.Load()
	if x == nil || x.held == nil {
		return true
	}
	h := x.held
	for len(h.b) > 0 && c.phase() == phOpen {
		k := min(len(h.b), len(c.l.rbuf))
		c.take(h.b[:k])
		h.b = h.b[k:]
	}
	if len(h.b) > 0 {
		return false // paused again (or closed): the rest waits
	}
	x.held = nil
	if h.eof && c.phase() == phOpen {
		c.sawEOF()
	}
	return c.phase() == phOpen
}

// sawEOF is the peer's end of file, read while c is open.
func (c *Conn) sawEOF() {
	c.st.set(lfPeerEOF, true)
	if eh, ok := c.ln.h.(EOFHandler); ok {
		// The handler decides when to close.
		c.setPhase(phPeerEOF)
		c.call(func() { eh.OnEOF(c) })
		return
	}
	// Peer EOF: echo what is pending, then close cleanly.
	c.doClose(taskClose, nil)
}

// Sends through the ring. At most one is in flight per Conn (c.wr), from
// the first pending chunk, so bytes never reorder; the bytes it covers stay
// in c.out, counted as pending, until its end says how many went out. A
// send to a full socket waits in the kernel, so no Out poll is needed.

// sendOn keeps c's output moving: a send while bytes are pending and none
// is in flight; once all went out, what follows a flush.
func (c *Conn) sendOn() {
	if c.wr != 0 {
		return // the send in flight goes on when it ends
	}
	c.mu.Lock()
	pending, shut := c.out.len(), c.st.has(bWrShut)
	c.mu.Unlock()
	c.sendFrom(pending, shut)
}

// sendFrom is sendOn once it knows what is pending and whether CloseWrite
// was asked, as sendEnded does from the lock it already holds.
func (c *Conn) sendFrom(pending int, shut bool) {
	if pending == 0 {
		c.flushed(shut)
		return
	}
	if err := c.l.armConn(c, evSend|Out, &c.wr); err != nil {
		c.finish(fmt.Errorf("reactor: send: %w", err))
		return
	}
	if c.ln.writeTimeout > 0 && c.wr != 0 {
		c.schedule()
	}
}

// sendable returns what the send being armed takes (loop.act).
func (c *Conn) sendable() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.firstBytes()
}

// sendEnded is c's send ending, n bytes sent. owed: the outcome came
// before the kernel's end (a cancel or the closer won), so the kernel may
// still read the send's chunk until the slot is released.
func (c *Conn) sendEnded(res Result, n int, owed bool) {
	c.wr = 0
	if owed {
		c.st.set(lfSendOwed, true) // finish keeps the chunk out of the pool
	}
	if c.phase() == phClosed {
		return
	}
	if res.Err != nil {
		err := res.Err
		var errno unix.Errno
		if errors.As(err, &errno) {
			err = fmt.Errorf("reactor: write: %w", errno)
		}
		c.mu.Lock()
		c.failWrite(err)
		c.mu.Unlock()
		c.finish(err)
		return
	}
	c.mu.Lock()
	held := c.out.held()
	c.out.consume(n, &c.ln.chunks)
	c.ln.addOutBuf(int64(c.out.held() - held))
	c.stampActive(c.l.now) // the send ended before it (loop.now)
	c.out.setSince(c.l.now)
	pending, shut := c.out.len(), c.st.has(bWrShut)
	c.storePending(pending)
	c.mu.Unlock()
	c.ln.bytesOut.Add(uint64(n))
	switch c.phase() {
	case phClosed, phLingering:
		return
	}
	c.sendFrom(pending, shut) // flushAndArm without taking mu again
}

// When a handler call's Writes go through the ring: in a turn of at least
// ringSendBatch Events, or on a loop serving at least ringSendConns Conns.
// A send earns its keep when the io_uring_enter that submits it also does
// other work: other sends of the turn, or, on a loop with many Conns, the
// completions that arrived meanwhile, which that enter collects so that the
// loop goes on instead of parking. With few Conns it costs that enter (as
// much as a write(2)) and then a wake-up of the loop, as its completion
// makes the ring's fd readable. Measured with one loop (perf stat, system
// calls per message): at 1,000 connections ring sends 0.97, writes 1.78
// (the runtime's epoll_pwait fell from 0.82 a message to 0.06); at one
// connection ring sends 5.1, writes 3.7.
const (
	ringSendBatch = 4
	ringSendConns = 8
)

// sendsOnRing reports whether a Write with nothing pending is queued for
// the loop to send through the ring rather than written at once: during a
// handler call (the loop sends when it returns), when sends pay there.
func (c *Conn) sendsOnRing() bool {
	return c.l.rcv != nil && c.inCall() &&
		(c.l.batch.Load() >= c.l.sendBatch.Load() || c.l.conns.Load() >= ringSendConns)
}

// stampActive moves lastActive to now unless a later stamp is there
// already: a stamp from the turn's clock (loop.now) is older than one a
// direct Write or a read took from the clock itself earlier in the turn,
// and a Write on another goroutine may store a time it read before the
// loop's. Every stamp but the one at open goes through here.
func (c *Conn) stampActive(now int64) {
	for {
		old := c.lastActive.Load()
		if now <= old || c.lastActive.CompareAndSwap(old, now) {
			return
		}
	}
}
