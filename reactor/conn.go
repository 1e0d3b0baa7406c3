//go:build linux

package reactor

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Conn tasks, handed to the loop by goroutines that are not running one of
// the Conn's handler calls (inCall false); during a handler call the same
// requests are asked in c's state word (connWord.ask) as 1<<task.
const (
	taskOpen      int32 = iota + 1 // a listener on another loop accepted c
	taskFlush                      // output became pending: arm Out
	taskClose                      // Close: drain then close
	taskCloseNow                   // CloseNow: close at once
	taskCloseWr                    // CloseWrite: drain then shutdown(SHUT_WR)
	taskShutdown                   // Listener.Shutdown: read what is buffered, drain, close
	taskForceStop                  // Shutdown's context ended: close at once
)

// errForceStop is OnClose's error for a Conn that Listener.Shutdown closed
// at once because its context ended before the Conn drained.
var errForceStop = fmt.Errorf("reactor: Shutdown's context ended before the connection drained: %w", ErrClosed)

// Conn is one accepted connection. Write, Close, CloseNow and CloseWrite
// may be called from any goroutine; the rest of its life runs on one loop.
type Conn struct {
	// The fields are ordered so that the small ones share words, and the
	// smallest share one atomic word (st): an idle Conn is 128 bytes, a
	// size class of its own (the package doc lists what else an idle Conn
	// holds). What only a closing, failed or oddly addressed Conn needs is
	// in its rare part.
	l  *loop     // constant: the loop that owns fd
	ln *Listener // constant

	mu  sync.Mutex
	out outBuf // guarded by mu: pending output, and since when (outBuf.since)

	// st: the phase (conn_state.go); whether the loop is inside a handler
	// call for c, which requesters read (kickLocked), and the tasks they
	// asked meanwhile; the flags guarded by mu; the loop's own flags; and
	// len(out), stored under mu and read by the loop without it (the
	// backpressure check after each OnData), saturating at
	// maxPendingLimit, which bounds MaxPending, so the check still holds
	// where a handler queued more. conn_word.go draws it.
	st connWord

	lastActive atomic.Int64 // nanotime of the last byte moved either way

	// Owned by the loop goroutine, as is everything below but fd, peer,
	// rare and ctx. What a message touches, from l to fd, is the first
	// 64 bytes: at 1,000 connections a Conn is out of the CPU's caches
	// each time its next message comes, and wr and fd on the second line
	// cost a second miss.
	wr       uint32 // c's in-flight send (or Out poll), as a link (c.l.reqAt: slot index+1); 0 = none
	fd       int32  // constant; unusable once the phase is closed (checked under mu)
	lastRead int64  // nanotime of the last byte read, kept only where ReadTimeout reads it
	drainBy  int64  // nanotime by which a drain must end; 0 = none
	rd       uint32 // c's in-flight read poll, as wr; 0 = none; its receive is in its place (conn_table.go)
	timerIdx int32  // its heap entry's index+1 in l.timers, kept by the heap; 0 = none
	slot     int32  // c's index+1 in l.served while open; 0 = none

	peer peerAddr // constant

	rare atomic.Pointer[connRare] // see more
	ctx  atomic.Pointer[any]      // user data
}

// maxPendingLimit is the most a Conn's pending count holds (connWord), and
// so the largest MaxPending that still pauses reading.
const maxPendingLimit = 1<<31 - 1

// storePending publishes n pending bytes (under mu).
func (c *Conn) storePending(n int) { c.st.setPending(n) }

// SetContext attaches v to c (any goroutine).
func (c *Conn) SetContext(v any) { c.ctx.Store(&v) }

// Context returns what SetContext stored, or nil.
func (c *Conn) Context() any {
	p := c.ctx.Load()
	if p == nil {
		return nil
	}
	return *p
}

// Fd returns the connection's descriptor, for diagnostics only: the layer
// owns it and closes it.
func (c *Conn) Fd() int { return int(c.fd) }

// RemoteAddr returns the peer's address. Where it is unknown, which
// happens when a peer resets its connection before the server looked its
// address up (accepting through the ring reports no address), it is the
// zero *net.TCPAddr (or an unnamed *net.UnixAddr), never nil.
func (c *Conn) RemoteAddr() net.Addr { return c.peer.addr(c.rare.Load(), c.ln.unix) }

// LocalAddr returns the connection's own address.
func (c *Conn) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.phase() == phClosed {
		return nil
	}
	sa, err := unix.Getsockname(int(c.fd))
	if err != nil {
		return nil
	}
	return sockaddrToAddr(sa, c.ln.unix)
}

// Pending returns the bytes written to c and not yet accepted by the
// kernel, or 2 GiB - 1 where more are.
func (c *Conn) Pending() int { return c.st.pending() }

// Write copies b for sending and never blocks. When nothing is pending it
// writes to the socket at once, on the caller's goroutine; what the socket
// does not take waits in c's output buffer. It returns ErrClosed once c is
// closing or closed, or the error that condemned the connection. (Where a
// Listener has ListenConfig.SendInPlace, a b that is the tail of the bytes
// OnData is handling may be sent from their receive buffer instead of
// copied: that handler has promised to leave them alone.)
func (c *Conn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if !c.phase().writable() || c.st.has(bWrShut|bCloseAsked) {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	if err := c.writeErr(); err != nil {
		c.mu.Unlock()
		return 0, err
	}
	n := 0
	if c.out.len() == 0 && !c.sendsOnRing() {
		// Direct path: the fd cannot be closed under us (closing moves
		// the phase under mu first), so this never reaches another
		// connection that got the same fd number (gnet #621).
		for n < len(b) {
			m, err := rawWrite(int(c.fd), b[n:])
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				err := fmt.Errorf("reactor: write: %w", err)
				c.failWrite(err)
				c.kickLocked(taskCloseNow)
				c.mu.Unlock()
				return n, err
			}
			n += m
		}
		if n > 0 {
			c.stampActive(nanotime())
			c.ln.bytesOut.Add(uint64(n))
		}
		if n == len(b) {
			c.mu.Unlock()
			return n, nil
		}
	}
	became := c.out.len() == 0
	held := c.out.held()
	if !became || n > 0 || !c.takeLoan(b) {
		c.out.append(b[n:], &c.ln.chunks)
	}
	if became && c.ln.writeTimeout > 0 {
		// Output becomes pending: only the write deadline reads since.
		c.out.setSince(nanotime())
	}
	c.ln.addOutBuf(int64(c.out.held() - held))
	c.storePending(c.out.len())
	c.kickLocked(taskFlush)
	c.mu.Unlock()
	return len(b), nil
}

// kickLocked makes sure the loop acts on task for c: during a handler call
// the loop takes it when the call returns; otherwise the task is queued.
// Asking reads whether a call runs in the same atomic step (connWord.ask),
// as the loop ends the call and takes what was asked in one (endCall), so
// a request made while the call is returning is either taken by the loop
// or queued as a task, never lost. A task asked outside a call stays
// asked and is taken again after the next call: every task is safe to
// repeat.
func (c *Conn) kickLocked(task int32) {
	if c.st.ask(task) {
		return
	}
	if task == taskFlush {
		if c.st.has(bTaskQueued) {
			return
		}
		c.st.set(bTaskQueued, true)
	}
	c.l.postTask(c, task)
}

// Close flushes pending output, then closes c; OnClose(c, nil) follows. A
// flush still unfinished ListenConfig.CloseTimeout after Close ends in a
// forced close, OnClose's error wrapping ErrClosed: the bound is on the
// whole flush, so a peer that reads slowly, however steadily, can be cut.
// Calling it again, or after c closed, returns nil.
func (c *Conn) Close() error { return c.requestClose(taskClose) }

// CloseNow closes c at once, discarding pending output.
func (c *Conn) CloseNow() error { return c.requestClose(taskCloseNow) }

// CloseWrite flushes pending output, then shuts the write side
// (shutdown(SHUT_WR)); reading goes on until the peer closes its side.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.phase().writable() {
		return ErrClosed
	}
	if !c.st.has(bWrShut) {
		c.st.set(bWrShut, true)
		c.kickLocked(taskCloseWr)
	}
	return nil
}

func (c *Conn) requestClose(task int32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.phase() == phClosed {
		return nil
	}
	c.st.set(bCloseAsked, true) // from now on Write refuses, whatever the loop is doing
	c.kickLocked(task)
	return nil
}

// runTask is the loop side of kickLocked and of the listener's hand-off.
func (c *Conn) runTask(l *loop, task int32) {
	switch task {
	case taskOpen:
		c.open()
		return
	case taskFlush:
		c.mu.Lock()
		c.st.set(bTaskQueued, false)
		c.mu.Unlock()
		c.flushAndArm()
	default:
		c.doClose(task, nil)
	}
}

// open runs on the loop once c is registered with its listener. From here
// to finish, c is among its loop's Conns (l.served).
func (c *Conn) open() {
	if err := c.l.addConn(c); err != nil {
		c.finish(err) // never opened: no OnOpen, so no OnClose
		return
	}
	if c.l.stopping {
		// Accepted before the reactor's Close began but handed over
		// after: close without ever calling OnOpen.
		c.finish(nil)
		return
	}
	c.st.set(lfOpened, true)
	c.l.conns.Add(1)
	c.lastRead = nanotime()
	c.lastActive.Store(c.lastRead)
	c.call(func() { c.ln.h.OnOpen(c) })
	if c.phase() != phOpen {
		return
	}
	c.armRead()
	c.schedule()
	if c.ln.stopping.Load() {
		// Accepted from the backlog by Shutdown: serve what it sent, then
		// close (a taskShutdown may also be queued; it finds it draining).
		c.doClose(taskShutdown, nil)
	}
}

// call runs a handler method with inCall set, then acts on what it asked.
func (c *Conn) call(f func()) {
	c.st.set(bInCall, true)
	f()
	c.afterCall()
}

// callData is call(OnData) without the closure (the hot path): it takes no
// lock of its own, so a read chunk costs at most the one the handler's
// Write takes.
func (c *Conn) callData(b []byte) {
	c.st.set(bInCall, true)
	c.ln.h.OnData(c, b)
	c.afterCall()
}

// afterCall acts on what the handler asked during its call, taken in the
// same atomic step that ends the call (kickLocked says why).
func (c *Conn) afterCall() {
	req := c.st.endCall()
	if req == 0 {
		return
	}
	switch { // the strongest close asked wins
	case req&(1<<taskCloseNow) != 0:
		c.doClose(taskCloseNow, nil)
	case req&(1<<taskClose) != 0:
		c.doClose(taskClose, nil)
	case req&(1<<taskCloseWr) != 0:
		c.doClose(taskCloseWr, nil)
	case req&(1<<taskFlush) != 0:
		c.flushAndArm()
	}
}

// armRead arms c's read, while open and none is in flight: a receive
// through the ring where the loop has one (conn_recv.go), else a readiness
// poll.
func (c *Conn) armRead() {
	if c.reading() || c.phase() != phOpen {
		return
	}
	// Pri: a read stops short at TCP's urgent mark with data behind it;
	// the wake-up that says so must not pass for an ordinary one (see
	// readable), or an edge-triggered wait would sleep through the rest.
	ev := In | RdHup | Pri
	if c.st.has(lfDrained) {
		ev |= evEdge
	}
	c.st.set(lfDrained, false)
	if c.l.rcv != nil && !c.st.has(lfPollOnce) {
		// One buffer at a time while the output backs up (see take),
		// not merely while a send is in flight: a handler that answers
		// each chunk has one queued whenever its receive ends, and its
		// Conn would never receive more than a buffer a time again.
		if err := c.armRecv(c.st.has(lfBackedUp)); err != nil {
			c.finish(fmt.Errorf("reactor: arm read: %w", err))
		}
		return
	}
	if err := c.l.armConn(c, ev, &c.rd); err != nil {
		c.finish(fmt.Errorf("reactor: arm read: %w", err))
	}
}

func (c *Conn) armWrite() {
	if c.phase() == phClosed {
		return
	}
	if c.wr == 0 {
		if err := c.l.armConn(c, Out, &c.wr); err != nil {
			c.finish(fmt.Errorf("reactor: arm write: %w", err))
			return
		}
	}
	// Scheduled even when the Out request was already in flight: a flush
	// of another turn may have emptied the output meanwhile (the socket
	// took it, below the level at which it reports Out), and the entry
	// that fired then found nothing pending and left none; output that
	// stalls again needs its WriteTimeout entry back.
	if c.ln.writeTimeout > 0 && c.wr != 0 {
		c.schedule()
	}
}

// wakeUnknown is readSome's wake for a read no readiness started: its end
// never counts as drained.
const wakeUnknown = Pri | RdHup

// readable is c's read request completing.
func (c *Conn) readable(res Result) {
	c.rd = 0
	switch c.phase() {
	case phLingering:
		if res.Err != nil {
			c.finish(res.Err)
			return
		}
		c.discard()
		return
	case phOpen:
	case phPaused:
		// Paused while this read was armed (Shutdown's readSome):
		// reading resumes, and re-arms, once the output drains; an
		// error still ends the Conn now.
		if res.Err != nil {
			c.finish(res.Err)
		}
		return
	default:
		return
	}
	if res.Err != nil {
		c.finish(res.Err)
		return
	}
	c.readSome(4, res.Events)
	c.st.set(lfPollOnce|lfStarved, false)
	c.armRead() // only while still open
}

// readSome reads up to rounds buffers, delivering each; it stops at
// EAGAIN, EOF, an error, or when the output backlog passes MaxPending.
// rounds < 0 reads what Shutdown found received (shutLeft) and no more:
// reading until EAGAIN never ended while a fast peer kept sending. It
// notes in c's lfDrained flag whether it ended with the socket empty, judged with
// wake, the readiness that started it (wakeUnknown: none).
//
// EAGAIN means empty, except at TCP's urgent mark, where a read that finds
// a signal pending (the runtime's preemption signal) answers EAGAIN with
// data behind the mark: so not after a wake-up that reported Pri. A short
// read empties a TCP socket, unless the peer's FIN or an urgent mark
// stopped it with more behind, which this wake-up reported (RdHup, Pri)
// or a later one will; a Unix socket's reads also stop at each sender's
// boundary, so there only EAGAIN counts.
func (c *Conn) readSome(rounds int, wake Events) {
	buf := c.l.rbuf
	var shut *connRare // rounds < 0: Shutdown made it
	if rounds < 0 {
		shut = c.more()
	}
	c.st.set(lfDrained, false)
	eagainDrains := wake&Pri == 0
	shortDrains := wake&(RdHup|Hup|Err|Pri) == 0 && !c.ln.unix
	for i := 0; rounds < 0 || i < rounds; i++ {
		if c.phase() != phOpen {
			return
		}
		if rounds < 0 {
			if shut.shutLeft <= 0 {
				return
			}
			buf = buf[:min(len(buf), int(shut.shutLeft))]
		}
		n, err := rawRead(int(c.fd), buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			c.st.set(lfDrained, eagainDrains)
			return
		case err != nil:
			c.finish(fmt.Errorf("reactor: read: %w", err))
			return
		case n == 0:
			c.sawEOF()
			return
		}
		if rounds < 0 {
			shut.shutLeft -= int32(n)
		}
		now := nanotime()
		if c.ln.readTimeout > 0 {
			c.lastRead = now
		}
		c.stampActive(now)
		c.ln.bytesIn.Add(uint64(n))
		c.callData(buf[:n])
		if c.phase() != phOpen {
			return
		}
		if c.Pending() > c.ln.maxPending {
			c.pause()
			return
		}
		if n < len(buf) && rounds >= 0 {
			c.st.set(lfDrained, shortDrains)
			return
		}
	}
}

// writable is c's write request completing.
func (c *Conn) writable(res Result) {
	c.wr = 0
	if c.phase() == phClosed {
		return
	}
	if res.Err != nil {
		c.finish(res.Err)
		return
	}
	c.flushAndArm()
}

// flushAndArm writes pending output, arms Out for what is left, resumes
// reading once the output drained, and ends a drain once empty.
func (c *Conn) flushAndArm() {
	switch c.phase() {
	case phClosed, phLingering:
		return
	}
	if c.l.rcv != nil {
		c.sendOn()
		return
	}
	c.mu.Lock()
	pending, err := c.flushLocked()
	shut := c.st.has(bWrShut)
	c.mu.Unlock()
	if err != nil {
		c.finish(err)
		return
	}
	if pending > 0 {
		c.armWrite()
		return
	}
	c.flushed(shut)
}

// pause stops reading c, its pending output being above MaxPending
// (backpressure: gnet #764, nbio #255/#479), until flushed resumes it.
func (c *Conn) pause() {
	c.setPhase(phPaused)
	c.st.set(lfBackedUp, true) // and it resumes so (flushed)
}

// flushed goes on once c's output is all in the kernel: the write side
// shut if CloseWrite asked (shut), a drain's linger, reading resumed.
func (c *Conn) flushed(shut bool) {
	if c.st.has(lfBackedUp) && c.phase() != phPaused {
		// Drained while open. A paused Conn resumes still backed up: the
		// peer went on sending meanwhile, and the socket's queue is full.
		c.st.set(lfBackedUp, false)
		c.l.drainedOpen++
	}
	if shut { // rare is on the Conn's second cache line: not loaded for every drain
		if x := c.rare.Load(); x == nil || !x.wrDone {
			c.more().wrDone = true
			_ = unix.Shutdown(int(c.fd), unix.SHUT_WR) // the peer may be gone; reads will tell
		}
	}
	switch c.phase() {
	case phDraining:
		c.linger()
	case phPaused:
		c.setPhase(phOpen)
		c.lastRead = nanotime() // the read deadline restarts with reading
		if !c.takeHeld() {
			return
		}
		if c.shutAsked() {
			c.shutdownRead()
			return
		}
		c.armRead()
		c.schedule()
	}
}

// flushLocked writes the pending output until EAGAIN; it reports what is
// left.
func (c *Conn) flushLocked() (int, error) {
	moved, held := 0, c.out.held()
	defer func() { c.ln.addOutBuf(int64(c.out.held() - held)) }()
	for c.out.len() > 0 {
		m, err := c.out.writeTo(int(c.fd), &c.ln.chunks)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN || (err == nil && m == 0) {
			break
		}
		if err != nil {
			err := fmt.Errorf("reactor: write: %w", err)
			c.failWrite(err)
			return 0, err // finish drops the output
		}
		moved += m
	}
	if moved > 0 {
		now := nanotime()
		c.stampActive(now)
		c.out.setSince(now)
		c.ln.bytesOut.Add(uint64(moved))
	}
	c.storePending(c.out.len())
	return c.out.len(), nil
}

// String identifies c in logs.
func (c *Conn) String() string {
	return fmt.Sprintf("conn(fd=%d, peer=%v)", c.fd, c.RemoteAddr())
}
