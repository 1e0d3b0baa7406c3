package reactor

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ListenConfig tunes a Listener. The zero value is usable.
type ListenConfig struct {
	// MaxConns bounds the open Conns; 0 is unlimited. Beyond it a new
	// connection is accepted and closed at once, counted as Refused.
	MaxConns int
	// MaxPending is the unsent output, in bytes, above which the layer
	// stops reading a Conn until its peer drains it; 0 means 1 MiB.
	MaxPending int
	// IdleTimeout closes a Conn that moved no byte either way for this
	// long (OnClose's error wraps ErrIdleTimeout); 0 is none.
	IdleTimeout time.Duration
	// CloseTimeout bounds the flush of Close, Shutdown and peer EOF; a
	// flush still unfinished then ends in a forced close. 0 means 30s.
	CloseTimeout time.Duration
	// Backlog is listen(2)'s backlog; 0 means the kernel's somaxconn.
	Backlog int
}

// ListenerStats is a snapshot of a Listener's counters.
type ListenerStats struct {
	Accepted     uint64 // connections accepted and opened
	Refused      uint64 // accepted and closed at once (MaxConns)
	Active       int64  // open Conns
	Closed       uint64 // Conns whose OnClose ran (or that closed unopened)
	BytesIn      uint64
	BytesOut     uint64
	Paused       int64  // Conns not being read because of backpressure
	AcceptCalls  uint64 // accept4 calls, EAGAIN and errors included
	AcceptErrors uint64 // accept4 failures other than EAGAIN/ECONNABORTED
	Backoffs     uint64 // times accepting paused on EMFILE/ENFILE/ENOBUFS/ENOMEM
}

// Accept-backoff bounds on fd exhaustion (libuv #690: never spin).
const (
	backoffMin = 5 * time.Millisecond
	backoffMax = 500 * time.Millisecond
)

// Listener accepts stream connections on one loop and hands each new Conn
// to a loop in turn (see the package doc for why not SO_REUSEPORT).
type Listener struct {
	r            *Reactor
	l            *loop // constant: the loop that accepts
	fd           int   // constant; closed on the accepting loop
	h            Handler
	addr         net.Addr
	unix         bool // constant: AF_UNIX (addresses convert differently)
	maxConns     int
	maxPending   int
	idle         time.Duration
	closeTimeout time.Duration
	onAccept     func(Result)

	// Owned by the accepting loop.
	acceptTag reqHandle
	backoff   time.Duration
	timerSeq  uint64
	lnClosed  bool
	next      int // round-robin cursor over r.loops

	closing  atomic.Bool // Close called: stop accepting
	stopping atomic.Bool // Shutdown called or reactor closing: open nothing new
	closedCh chan struct{}

	mu      sync.Mutex
	head    *Conn         // guarded by mu: live Conns
	drained chan struct{} // guarded by mu: closed when active drops to 0 during Shutdown

	accepted, refused, closed, bytesIn, bytesOut atomic.Uint64
	acceptCalls, acceptErrs, backoffs            atomic.Uint64
	active, paused, live                         atomic.Int64 // live: Conns whose OnClose has not returned
}

// Listen opens a listening socket and serves its connections with h.
// network is "tcp", "tcp4", "tcp6" or "unix".
func (r *Reactor) Listen(network, address string, h Handler, cfg ListenConfig) (*Listener, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	switch network {
	case "tcp", "tcp4", "tcp6", "unix":
	default:
		return nil, fmt.Errorf("reactor: listen: network %q not supported (tcp, tcp4, tcp6, unix)", network)
	}
	lc := net.ListenConfig{}
	if cfg.Backlog > 0 {
		// net has no backlog knob; we call listen(2) again on the dup.
		_ = cfg.Backlog
	}
	gl, err := lc.Listen(context.Background(), network, address)
	if err != nil {
		return nil, fmt.Errorf("reactor: listen: %w", err)
	}
	if ul, ok := gl.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // our dup keeps serving the path
	}
	fd, err := dupFd(gl.(syscall.Conn))
	addr := gl.Addr()
	if cerr := gl.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("reactor: listen: %w", err)
	}
	if cfg.Backlog > 0 {
		if err := unix.Listen(fd, cfg.Backlog); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("reactor: listen backlog: %w", err)
		}
	}
	ln := &Listener{
		r: r, fd: fd, h: h, addr: addr, unix: network == "unix",
		maxConns: cfg.MaxConns, maxPending: cfg.MaxPending, idle: cfg.IdleTimeout,
		closeTimeout: cfg.CloseTimeout, closedCh: make(chan struct{}),
	}
	if ln.maxPending <= 0 {
		ln.maxPending = 1 << 20
	}
	if ln.closeTimeout <= 0 {
		ln.closeTimeout = 30 * time.Second
	}
	ln.onAccept = ln.acceptable
	ln.l = r.loopFor(fd)
	if !ln.l.postTask(ln, lnTaskStart) {
		unix.Close(fd)
		return nil, ErrClosed
	}
	return ln, nil
}

// Listener tasks.
const (
	lnTaskStart int32 = iota + 1
	lnTaskClose
	lnTaskDrainClose // Shutdown: accept the backlog, then close
)

// dupFd takes a descriptor of its own for a socket net created, so that
// net's copy can be closed (deregistering it from Go's netpoller).
func dupFd(sc syscall.Conn) (int, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, err
	}
	return nfd, nil
}

// Addr returns the bound address (with the port the kernel chose for :0).
func (ln *Listener) Addr() net.Addr { return ln.addr }

// Stats returns a snapshot of ln's counters.
func (ln *Listener) Stats() ListenerStats {
	return ListenerStats{
		Accepted: ln.accepted.Load(), Refused: ln.refused.Load(), Active: ln.active.Load(),
		Closed: ln.closed.Load(), BytesIn: ln.bytesIn.Load(), BytesOut: ln.bytesOut.Load(),
		Paused: ln.paused.Load(), AcceptCalls: ln.acceptCalls.Load(),
		AcceptErrors: ln.acceptErrs.Load(), Backoffs: ln.backoffs.Load(),
	}
}

// Close stops accepting now and closes the listening socket; open Conns
// stay. It waits until the socket is closed, so it returns ErrOnLoop when
// called from a loop callback (use Shutdown's context-free path there:
// CloseAsync).
func (ln *Listener) Close() error {
	if ln.r.onLoop() {
		return ErrOnLoop
	}
	ln.CloseAsync()
	<-ln.closedCh
	return nil
}

// CloseAsync stops accepting: the listening socket is closed by its loop
// shortly after. Safe from any goroutine, loop callbacks included.
func (ln *Listener) CloseAsync() {
	if ln.closing.Swap(true) {
		return
	}
	if !ln.l.postTask(ln, lnTaskClose) {
		// The loop is gone: the reactor's Close closed the socket.
		return
	}
}

// Shutdown stops accepting, then lets every Conn read what already sits in
// its receive buffer, deliver it, flush its output and close. It returns
// when all are closed, or ctx.Err() after force-closing the rest when ctx
// ends first.
func (ln *Listener) Shutdown(ctx context.Context) error {
	if ln.r.onLoop() {
		return ErrOnLoop
	}
	// Accept what already waits in the backlog (those peers' bytes were
	// received too), then close the socket; then drain every Conn.
	if !ln.closing.Swap(true) {
		ln.l.postTask(ln, lnTaskDrainClose)
	}
	<-ln.closedCh
	ln.stopping.Store(true)
	ln.mu.Lock()
	if ln.drained == nil {
		ln.drained = make(chan struct{})
		if ln.live.Load() == 0 {
			close(ln.drained)
		}
	}
	drained := ln.drained
	for c := ln.head; c != nil; c = c.next {
		c.l.postTask(c, taskShutdown)
	}
	ln.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
	}
	ln.mu.Lock()
	for c := ln.head; c != nil; c = c.next {
		c.l.postTask(c, taskForceStop)
	}
	ln.mu.Unlock()
	// Force-closing is bounded: each loop closes at once.
	<-drained
	return ctx.Err()
}

func (ln *Listener) runTask(l *loop, task int32) {
	switch task {
	case lnTaskStart:
		l.own(ln)
		if ln.closing.Load() || l.stopping {
			ln.closeSocket()
			return
		}
		ln.arm()
	case lnTaskClose:
		ln.closeSocket()
	case lnTaskDrainClose:
		if !ln.lnClosed {
			ln.drainBacklog()
		}
		ln.closeSocket()
	}
}

func (ln *Listener) arm() {
	if ln.lnClosed || !ln.acceptTag.IsZero() {
		return
	}
	tag, err := ln.l.armOn(ln.fd, In, ln.onAccept)
	if err != nil {
		ln.r.cfg.Logger.Sugar().Debugw("reactor: arm listener", "addr", ln.addr, "err", err)
		ln.closeSocket()
		return
	}
	ln.acceptTag = tag
}

func (ln *Listener) closeSocket() {
	if ln.lnClosed {
		return
	}
	ln.lnClosed = true
	ln.timerSeq++
	ln.l.disown(ln)
	ln.l.closeFdOn(ln.fd)
	close(ln.closedCh)
}

// acceptable is the listening socket's read request completing.
func (ln *Listener) acceptable(res Result) {
	ln.acceptTag = reqHandle{}
	if ln.lnClosed {
		return
	}
	if res.Err != nil {
		ln.closeSocket()
		return
	}
	for i := 0; i < 64; i++ {
		ln.acceptCalls.Add(1)
		nfd, sa, err := unix.Accept4(ln.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
			ln.backoff = 0
			ln.arm()
			return
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			// Out of descriptors or memory (libuv #690): the pending
			// connection stays queued and the socket stays readable,
			// so re-arming now would spin. Wait, doubling up to a bound.
			ln.acceptErrs.Add(1)
			ln.backoffs.Add(1)
			ln.backoff = min(max(2*ln.backoff, backoffMin), backoffMax)
			ln.timerSeq++
			ln.l.addTimer(timerEntry{when: nanotime() + int64(ln.backoff), seq: ln.timerSeq, obj: ln})
			return
		default:
			ln.acceptErrs.Add(1)
			ln.r.cfg.Logger.Sugar().Debugw("reactor: accept", "addr", ln.addr, "err", err)
			continue
		}
		ln.backoff = 0
		ln.admit(nfd, sa)
	}
	ln.arm() // more may be queued; let other fds have a turn first
}

// drainBacklog accepts every connection already queued, for Shutdown.
func (ln *Listener) drainBacklog() {
	for i := 0; i < 1<<16; i++ {
		ln.acceptCalls.Add(1)
		nfd, sa, err := unix.Accept4(ln.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
			ln.admit(nfd, sa)
		case unix.EINTR, unix.ECONNABORTED:
		default:
			return // EAGAIN: empty; anything else: what is left is reset
		}
	}
}

// fire ends an accept backoff.
func (ln *Listener) fire(_ *loop, seq uint64, _ int64) {
	if seq == ln.timerSeq && !ln.lnClosed {
		ln.arm()
	}
}

// admit registers an accepted fd and hands it to the next loop.
func (ln *Listener) admit(nfd int, sa unix.Sockaddr) {
	if ln.l.stopping || (ln.maxConns > 0 && ln.active.Load() >= int64(ln.maxConns)) {
		unix.Close(nfd)
		ln.refused.Add(1)
		return
	}
	loops := ln.r.loops
	target := loops[ln.next%len(loops)]
	ln.next++
	c := &Conn{l: target, ln: ln, fd: nfd, remote: sa}
	c.onRead, c.onWrite = c.readable, c.writable
	ln.mu.Lock()
	c.next = ln.head
	if ln.head != nil {
		ln.head.prev = c
	}
	ln.head = c
	ln.mu.Unlock()
	ln.active.Add(1)
	ln.live.Add(1)
	ln.accepted.Add(1)
	if target == ln.l {
		c.open()
		return
	}
	if !target.postTask(c, taskOpen) {
		// The target loop stopped (reactor closing).
		unix.Close(nfd)
		ln.connClosed(c)
		ln.connDone()
	}
}

// connClosed unlinks a closed Conn and signals Shutdown when none is left.
func (ln *Listener) connClosed(c *Conn) {
	ln.mu.Lock()
	if c.prev != nil {
		c.prev.next = c.next
	} else if ln.head == c {
		ln.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
	ln.active.Add(-1)
	ln.closed.Add(1)
	ln.mu.Unlock()
}

// connDone is the end of a Conn's life, after its OnClose: Shutdown returns
// once every Conn got here.
func (ln *Listener) connDone() {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.live.Add(-1) == 0 && ln.drained != nil {
		select {
		case <-ln.drained:
		default:
			close(ln.drained)
		}
	}
}

// stopOnLoop closes the listening socket as the reactor closes.
func (ln *Listener) stopOnLoop() {
	ln.stopping.Store(true)
	ln.closeSocket()
}
