//go:build linux

package reactor

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// A Conn closes in one of three ways. CloseNow, an error or a deadline
// closes at once (finish). Close, the peer's EOF and Shutdown drain first:
// reading stops, pending output is flushed (bounded by CloseTimeout), and
// then a TCP Conn lingers: its write side is shut (the peer reads our FIN
// after the last byte), and what the peer still sends is read and
// discarded until its EOF, or until the peer has acknowledged all our
// output and nothing unread is left (or discardRounds buffers were read in
// a turn: a peer still sending is then reset, which costs it none of our
// output), bounded by LingerTimeout. Closing a
// socket whose receive queue holds unread bytes makes the kernel send a
// reset and throw away whatever of our output the peer had not yet
// acknowledged, so closing as soon as the output reached the kernel lost
// up to megabytes of echo from peers that were still sending (measured at
// echod's SIGTERM). A Conn whose peer already sent EOF, or a Unix socket
// (whose peer keeps what we queued), closes straight after the flush.
//
//	lingering step                 condition               next
//	-----------------------------  ----------------------  ---------------------
//	shut SHUT_WR, read and drop    read returns 0 (EOF)    close, clean
//	                               read fails              close with the error
//	                               EAGAIN, SIOCOUTQ == 0   close, clean (no reset
//	                                                       can cost us output)
//	                               EAGAIN, output in       wait for input, look
//	                               flight                  again every lingerPoll
//	                               discardRounds reads     as at EAGAIN: the read
//	                               and no EAGAIN yet       armed is ready at once
//	LingerTimeout passes           SIOCOUTQ == 0           close, clean
//	                               output unacknowledged   close, errLingerCut
//	                                                       (a cut drain)

// lingerPoll is how often a lingering Conn whose output is still in flight
// looks whether the peer acknowledged it; the kernel offers no readiness
// event for an emptied send queue.
const lingerPoll = 5 * time.Millisecond

// defaultLinger bounds a lingering close when ListenConfig.LingerTimeout is 0.
const defaultLinger = 2 * time.Second

// errLingerCut is OnClose's error for a Conn whose peer neither read the
// last of its output nor closed within LingerTimeout: the close reset the
// connection with output undelivered.
var errLingerCut = fmt.Errorf("reactor: the peer kept sending and left output unread past the linger bound: %w", ErrClosed)

// doClose acts on a close task.
func (c *Conn) doClose(task int32, err error) {
	switch {
	case c.phase() == phClosed:
	case task == taskCloseNow:
		c.finish(err)
	case task == taskForceStop:
		// Pending output is discarded: not the clean close OnClose's nil means.
		c.finish(errForceStop)
	case task == taskCloseWr:
		c.flushAndArm()
	case task == taskShutdown && c.phase().writable():
		x := c.more()
		x.shutReq = true
		// What was received before Shutdown is served; what arrives
		// after is not (the linger discards it).
		// After polls the socket holds all that was received. Through
		// the ring some may be out of it already, in buffers not yet
		// handed over or held while paused: the socket is measured once
		// the receive has ended and those were delivered (shutdownRead).
		x.shutLeft = shutUnmeasured
		if c.l.rcv == nil {
			x.shutLeft = c.inq()
		}
		c.shutdownRead()
	case c.phase().writable():
		c.beginDrain(err)
	}
}

// shutdownRead serves Listener.Shutdown: it delivers what already sits in
// the receive buffer, then drains. While backpressure pauses reading it
// waits, and flushAndArm calls it again when reading resumes: draining at
// once would drop bytes the kernel had already received (and the close
// would reset the peer, unread data being left).
func (c *Conn) shutdownRead() {
	if c.phase() == phPaused {
		c.boundShutdown()
		return
	}
	if c.receiving() {
		// Bytes the receive already took are delivered first: its end
		// calls this again, and then the socket is read directly.
		c.stopRecv()
		return
	}
	if x := c.more(); x.shutLeft == shutUnmeasured {
		x.shutLeft = c.inq()
	}
	c.readSome(-1, wakeUnknown)
	if p := c.phase(); p == phOpen || p == phPeerEOF {
		c.beginDrain(nil)
	}
}

// boundShutdown starts the CloseTimeout that bounds Shutdown's wait for a
// paused Conn, as it bounds the drain after it (beginDrain keeps this
// bound), or a peer that never reads would hold Shutdown forever.
func (c *Conn) boundShutdown() {
	if c.drainBy == 0 {
		c.drainBy = nanotime() + int64(c.ln.closeTimeout)
		c.schedule()
	}
}

// beginDrain stops reading and closes once pending output is flushed.
func (c *Conn) beginDrain(err error) {
	c.setPhase(phDraining)
	if err != nil || c.rare.Load() != nil {
		c.more().closeErr = err
	}
	if c.rd != 0 {
		c.l.cancelOn(c.l.reqAt(c.rd))
	}
	c.stopRecv()
	if c.drainBy == 0 { // Shutdown may have started the bound while paused
		c.drainBy = nanotime() + int64(c.ln.closeTimeout)
	}
	c.schedule()
	c.flushAndArm()
}

// finish closes c now: its requests complete first (through closeConnFd),
// then the fd is closed, then OnClose runs, exactly once.
func (c *Conn) finish(err error) {
	if c.phase() == phClosed {
		return
	}
	c.mu.Lock()
	c.setPhaseLocked(phClosed)
	if err == nil {
		err = c.writeErr()
	}
	c.ln.addOutBuf(-int64(c.out.held()))
	if c.wr != 0 && c.l.reqAt(c.wr).Data().ev&evSend != 0 || c.st.has(lfSendOwed) {
		// The kernel may read the send's chunk until the send's end,
		// which closeConnFd does not wait for, and which a send
		// delivered early (the reactor's Close) has not seen either:
		// the chunk stays with c, which the send's slot holds until
		// then, and is never pooled.
		c.out.abandon(&c.ln.chunks)
	} else {
		c.out.reset(&c.ln.chunks)
	}
	c.storePending(0)
	c.mu.Unlock()
	if x := c.rare.Load(); x != nil {
		x.held = nil // bytes held while paused go with the Conn
	}
	// From here no goroutine uses c.fd: Write saw phClosed under mu.
	// Its heap entry goes first: the entry names c by its place in
	// l.served, which dropConn gives to another Conn. Once out of
	// l.served c schedules nothing more (schedule).
	c.unschedule()
	if c.slot != 0 { // none if open could not give it one
		c.l.dropConn(c)
	}
	c.l.closeConnFd(c)
	if err != nil && c.ln.shutting.Load() && cutByDeadline(err) {
		c.ln.cutInDrain.Add(1) // Shutdown must not report a clean drain
	}
	c.ln.connClosed() // counters first: OnClose may read them
	if c.st.has(lfOpened) {
		c.l.conns.Add(-1)
		c.ln.h.OnClose(c, err)
	}
	c.ln.connDone()
}

// cutByDeadline reports whether err is one of the deadline errors
// deadlineErr makes, rather than the peer's doing (a reset, EOF).
func cutByDeadline(err error) bool {
	return errors.Is(err, ErrIdleTimeout) || errors.Is(err, errDeadline) || errors.Is(err, ErrClosed)
}

// linger is the last step of a drain, once the output reached the kernel
// (see the top of this file).
func (c *Conn) linger() {
	if c.st.has(lfPeerEOF) || c.ln.linger < 0 || c.ln.unix {
		c.finish(c.closeReason())
		return
	}
	if c.phase() != phLingering {
		c.setPhase(phLingering)
		x := c.more()
		if !x.wrDone {
			x.wrDone = true
			_ = unix.Shutdown(int(c.fd), unix.SHUT_WR) // a peer gone already shows in the read
		}
		x.lingerBy = nanotime() + int64(c.ln.linger)
	}
	c.discard()
}

// discardRounds bounds the reads of one discard, as rounds bound an open
// Conn's readSome: a peer that sends as fast as the loop drops would
// otherwise hold the loop in one discard, its other Conns and its timers
// (this Conn's linger bound among them) waiting.
const discardRounds = 4

// discard reads and drops what the peer sends while c lingers, and closes
// c once nothing of its output can be lost any more (see the table above).
// After discardRounds reads it goes on as at EAGAIN: the read it arms is
// ready at once if more came, and the loop comes back to c after a turn.
func (c *Conn) discard() {
	buf := c.l.rbuf
	for i := 0; ; i++ {
		n, err := 0, error(unix.EAGAIN)
		if i < discardRounds {
			n, err = rawRead(int(c.fd), buf)
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if c.unacked() == 0 {
				c.finish(c.closeReason())
				return
			}
			if !c.reading() {
				if err := c.l.armConn(c, In|RdHup, &c.rd); err != nil {
					c.finish(fmt.Errorf("reactor: arm read: %w", err))
					return
				}
				if c.phase() == phClosed {
					return // the arm was refused, and its callback closed c
				}
			}
			x := c.more()
			x.lingerNext = min(nanotime()+int64(lingerPoll), x.lingerBy)
			c.schedule()
			return
		case err != nil:
			c.finish(fmt.Errorf("reactor: read while closing: %w", err))
			return
		case n == 0:
			c.st.set(lfPeerEOF, true)
			c.finish(c.closeReason())
			return
		}
		c.ln.bytesDiscarded.Add(uint64(n))
	}
}

// shutUnmeasured is shutLeft before shutdownRead measured the socket.
const shutUnmeasured int32 = -1 << 31

// inq returns the bytes waiting in c's receive queue (SIOCINQ), or, if the
// kernel will not say, as many as an int32 holds: read to EAGAIN.
func (c *Conn) inq() int32 {
	n, err := unix.IoctlGetInt(int(c.fd), unix.SIOCINQ)
	if err != nil {
		return 1<<31 - 1
	}
	return int32(min(n, 1<<31-1))
}

// unacked returns the bytes of c's output the peer has not acknowledged
// (SIOCOUTQ), or 1 if the kernel will not say.
func (c *Conn) unacked() int {
	n, err := unix.IoctlGetInt(int(c.fd), unix.SIOCOUTQ)
	if err != nil {
		return 1
	}
	return n
}

// lingerTimer is c's timer firing while it lingers: past the bound it
// closes (cleanly if the peer has acknowledged all of c's output, as a cut
// drain otherwise), before it looks again.
func (c *Conn) lingerTimer(now int64) {
	if now < c.more().lingerBy {
		c.discard()
		return
	}
	if c.unacked() == 0 {
		c.finish(c.closeReason())
		return
	}
	c.finish(errLingerCut)
}
