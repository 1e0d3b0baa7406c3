//go:build linux

package reactor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Accept-backoff bounds on fd exhaustion (libuv #690: never spin).
const (
	backoffMin = 5 * time.Millisecond
	backoffMax = 500 * time.Millisecond
)

// Listener accepts stream connections and serves them with a Handler (see
// the package doc for its socket strategy).
type Listener struct {
	r            *Reactor
	h            Handler
	addr         net.Addr
	unix         bool // AF_UNIX: addresses convert differently
	reusePort    bool
	maxConns     int
	maxPending   int
	idle         time.Duration
	readTimeout  time.Duration
	writeTimeout time.Duration
	closeTimeout time.Duration
	linger       time.Duration // < 0: none
	sock         sockDefaults  // applied to accepted TCP sockets; constant
	socks        []*lsock      // constant after Listen
	chunks       outPool       // the Conns' output chunks

	closing   atomic.Bool  // Close or Shutdown called: stop accepting
	stopping  atomic.Bool  // Shutdown or the reactor's Close: drain what is open
	openSocks atomic.Int32 // sockets not yet closed
	closedCh  chan struct{}
	next      atomic.Uint32 // round-robin cursor over r.loops

	mu      sync.Mutex
	head    *Conn         // guarded by mu: live Conns
	drained chan struct{} // guarded by mu: closed when live drops to 0 during Shutdown

	accepted, refused, closed, bytesIn, bytesOut atomic.Uint64
	acceptCalls, acceptErrs, backoffs            atomic.Uint64
	bytesDiscarded                               atomic.Uint64 // read from lingering Conns and dropped
	active, paused, live                         atomic.Int64  // live: Conns whose OnClose has not returned
	outBuf                                       atomic.Int64  // capacity of the Conns' output buffers
	cutInDrain                                   atomic.Int64  // Conns a deadline closed after stopping was set
}

// lsock is one listening socket of a Listener, owned by the loop that
// accepts on it.
type lsock struct {
	ln       *Listener
	l        *loop // constant
	fd       int   // constant; closed on l
	onAccept func(Result)

	// Owned by l.
	acceptTag reqHandle
	backoff   time.Duration
	timerSeq  uint64
	closed    bool
	// ring: acceptTag is a multishot accept through the ring, not a poll
	// (see acceptedOne); draining: Shutdown canceled it, and drains the
	// backlog at its end.
	ring, draining bool
	rsa            unix.RawSockaddrAny // the peer's address buffer (rawAccept, rawGetpeername)
}

// Listen opens a listening socket and serves its connections with h.
// network is "tcp", "tcp4", "tcp6" or "unix".
func (r *Reactor) Listen(network, address string, h Handler, cfg ListenConfig) (*Listener, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	case "unix":
		cfg.ReusePort = false // the kernel does not spread Unix sockets
	default:
		return nil, fmt.Errorf("reactor: listen: network %q not supported (tcp, tcp4, tcp6, unix)", network)
	}
	n := 1
	if cfg.ReusePort {
		n = len(r.loops)
	}
	var fds []int
	var first net.Addr
	for i := 0; i < n; i++ {
		fd, addr, err := listenFd(network, address, cfg)
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("reactor: listen: %w", err)
		}
		fds = append(fds, fd)
		if i == 0 {
			first = addr
			address = addr.String() // the others join the port the first got
		}
	}
	return r.serve(fds, first, network == "unix", h, cfg)
}

// ListenFile serves the listening stream socket f (TCP or Unix) with h, as
// Listen serves one it opened: for a socket the process inherited, such as
// one systemd passes under socket activation (fd 3 onwards, LISTEN_FDS).
// The Listener works on a duplicate of f's descriptor: closing it does not
// close f, but the socket they share stops listening. ReusePort does not
// apply.
func (r *Reactor) ListenFile(f *os.File, h Handler, cfg ListenConfig) (*Listener, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	name := "<nil>"
	if f != nil {
		name = f.Name()
	}
	fd, network, addr, err := adoptFd(f, true)
	if err != nil {
		return nil, fmt.Errorf("reactor: listen on %s: %w", name, err)
	}
	cfg.ReusePort = false
	if cfg.Backlog > 0 {
		if err := unix.Listen(fd, cfg.Backlog); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("reactor: listen on %s: %w", name, err)
		}
	}
	return r.serve([]int{fd}, addr, network == "unix", h, cfg)
}

// serve makes a Listener of the listening sockets fds (owned from here on)
// and starts accepting on them.
func (r *Reactor) serve(fds []int, addr net.Addr, unixSock bool, h Handler, cfg ListenConfig) (*Listener, error) {
	ln := r.newListener(addr, unixSock, h, cfg)
	for i, fd := range fds {
		l := r.loopFor(fd)
		if cfg.ReusePort {
			l = r.loops[i]
		}
		s := &lsock{ln: ln, l: l, fd: fd}
		s.onAccept = s.acceptable
		ln.socks = append(ln.socks, s)
	}
	ln.openSocks.Store(int32(len(ln.socks)))
	for i, s := range ln.socks {
		if !s.l.postTask(s, lnTaskStart) {
			for _, s := range ln.socks[i:] {
				unix.Close(s.fd)
			}
			if i == 0 {
				return nil, ErrClosed
			}
			// The reactor's Close closes the ones that started.
			if ln.openSocks.Add(-int32(len(ln.socks)-i)) == 0 {
				close(ln.closedCh)
			}
			return ln, nil
		}
	}
	return ln, nil
}

// listenFd opens one listening socket through net (which resolves the
// address and sets the usual options) and keeps a dup of its own.
func listenFd(network, address string, cfg ListenConfig) (int, net.Addr, error) {
	lc := net.ListenConfig{}
	if cfg.ReusePort {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	gl, err := lc.Listen(context.Background(), network, address)
	if err != nil {
		return -1, nil, err
	}
	if ul, ok := gl.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // our dup keeps serving the path
	}
	fd, err := dupFd(gl.(syscall.Conn))
	addr := gl.Addr()
	if cerr := gl.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil && cfg.Backlog > 0 {
		err = unix.Listen(fd, cfg.Backlog)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, nil, err
	}
	return fd, addr, nil
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
		Paused: ln.paused.Load(), OutBuffer: ln.outBuf.Load(), Discarded: ln.bytesDiscarded.Load(), AcceptCalls: ln.acceptCalls.Load(),
		AcceptErrors: ln.acceptErrs.Load(), Backoffs: ln.backoffs.Load(),
	}
}

// Close stops accepting now and closes the listening socket(s); open Conns
// stay. It waits until the sockets are closed, so from a loop callback it
// returns ErrOnLoop (use CloseAsync there).
func (ln *Listener) Close() error {
	if ln.r.onLoop() {
		return ErrOnLoop
	}
	ln.CloseAsync()
	<-ln.closedCh
	return nil
}

// CloseAsync stops accepting: the listening sockets are closed by their
// loops shortly after. Safe from any goroutine, loop callbacks included.
func (ln *Listener) CloseAsync() { ln.stopAccepting(lnTaskClose) }

func (ln *Listener) stopAccepting(task int32) {
	if ln.closing.Swap(true) {
		return
	}
	for _, s := range ln.socks {
		// A refused post means the loop stopped: its stop closed s.
		s.l.postTask(s, task)
	}
}

// Shutdown stops accepting (after accepting what already waits in the
// backlog: those peers' bytes were received too), then lets every Conn read
// what already sits in its receive buffer, deliver it, flush its output and
// close. It returns when all are closed, or ctx.Err() after force-closing
// the rest when ctx ends first (their pending output is discarded and
// their OnClose error wraps ErrClosed). If a deadline closed some Conns
// during the drain (say an IdleTimeout shorter than ctx's), it reports that
// with an error wrapping ErrDrainIncomplete: their output was discarded.
func (ln *Listener) Shutdown(ctx context.Context) error {
	if ln.r.onLoop() {
		return ErrOnLoop
	}
	ln.stopAccepting(lnTaskDrainClose)
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
		if n := ln.cutInDrain.Load(); n > 0 {
			return fmt.Errorf("%w: %d Conn(s), output discarded", ErrDrainIncomplete, n)
		}
		return nil
	case <-ctx.Done():
	}
	ln.mu.Lock()
	for c := ln.head; c != nil; c = c.next {
		c.l.postTask(c, taskForceStop)
	}
	ln.mu.Unlock()
	<-drained // bounded: each loop closes its Conns at once
	return ctx.Err()
}

func (s *lsock) runTask(l *loop, task int32) {
	switch task {
	case lnTaskStart:
		l.own(s)
		if l.stopping {
			s.close()
			return
		}
		if s.ln.closing.Load() {
			// Close or Shutdown came first; its task, queued behind this
			// one, closes s (Shutdown's after accepting the backlog).
			return
		}
		s.arm()
	case lnTaskClose:
		s.close()
	case lnTaskDrainClose:
		if s.ring && !s.acceptTag.IsZero() && !s.closed {
			// The kernel accepts for s: stop that first, and drain the
			// backlog once its end shows that every connection it
			// accepted was handed over (acceptable), or those would be
			// closed as arriving after the close.
			s.draining = true
			s.l.cancelOn(s.acceptTag)
			return
		}
		if !s.closed {
			s.drainBacklog()
		}
		s.close()
	}
}

func (s *lsock) arm() {
	if s.closed || !s.acceptTag.IsZero() {
		return
	}
	// Through the ring where the loop has it: one multishot accept, no
	// poll and no accept4 per wake-up (acceptedOne).
	ev := In
	s.ring = s.l.rcv != nil
	if s.ring {
		ev = evAccept | In
		s.ln.acceptCalls.Add(1)
	}
	// A refused arm completes through acceptable, which closes s.
	if err := s.l.armOn(s.fd, ev, s.onAccept, &s.acceptTag); err != nil {
		s.ln.r.cfg.Logger.Sugar().Debugw("reactor: arm listener", "addr", s.ln.addr, "err", err)
		s.close()
	}
}

func (s *lsock) close() {
	if s.closed {
		return
	}
	s.closed = true
	s.timerSeq++
	s.l.disown(s)
	// Stop listening now: close(2) alone can leave the socket listening
	// while an io_uring request still holds the file (liburing #932), so
	// the kernel completed handshakes after Close returned, which the
	// final release then reset (a dial after Listener.Close succeeded in
	// 13 of 200 runs of TestBlockingCallsFromACallback on io_uring).
	_ = unix.Shutdown(s.fd, unix.SHUT_RD) // best effort: the close follows
	s.l.closeFdOn(s.fd)
	if s.ln.openSocks.Add(-1) == 0 {
		close(s.ln.closedCh)
	}
}

// stopOnLoop closes the listening socket as the reactor closes.
func (s *lsock) stopOnLoop() {
	s.ln.stopping.Store(true)
	s.close()
}

// acceptable is the listening socket's request completing, or, through the
// ring, handing over one connection (evAccept).
func (s *lsock) acceptable(res Result) {
	if res.Events&evAccept != 0 && res.Err == nil {
		s.acceptedOne(s.l.takeAccepted())
		return
	}
	s.acceptTag = reqHandle{}
	if s.draining {
		s.draining = false
		if !s.closed {
			s.drainBacklog()
			s.close()
		}
		return
	}
	if s.closed {
		return
	}
	if s.ring {
		s.ringEnded(res)
		return
	}
	if res.Err != nil {
		s.close()
		return
	}
	ln := s.ln
	for i := 0; i < 64; i++ {
		ln.acceptCalls.Add(1)
		nfd, err := rawAccept(s.fd, &s.rsa)
		switch err {
		case nil:
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
			s.backoff = 0
			s.arm()
			return
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			ln.acceptErrs.Add(1)
			s.backOff()
			return
		default:
			ln.acceptErrs.Add(1)
			ln.r.cfg.Logger.Sugar().Debugw("reactor: accept", "addr", ln.addr, "err", err)
			continue
		}
		s.backoff = 0
		s.admit(nfd)
	}
	s.arm() // more may be queued; let other fds have a turn first
}

// backOff waits before accepting again. Out of descriptors or memory
// (libuv #690), the pending connection stays queued and the socket stays
// readable, so re-arming now would spin. Wait, doubling up to a bound.
func (s *lsock) backOff() {
	s.ln.backoffs.Add(1)
	s.backoff = min(max(2*s.backoff, backoffMin), backoffMax)
	s.timerSeq++
	s.l.addTimer(timerEntry{when: nanotime() + int64(s.backoff), ref: s.timerSeq, obj: s})
}

// acceptedOne takes a connection the kernel accepted for s through the
// ring. The accept brings no address (one buffer would serve every
// connection), so the peer's is asked for (getpeername: one system call,
// where the poll path makes an accept4 per connection and one more that
// finds the backlog empty). A connection that arrives once s closed, its
// accept being canceled, is closed, as the backlog is.
func (s *lsock) acceptedOne(nfd int) {
	if s.closed {
		s.ln.refused.Add(1)
		unix.Close(nfd)
		return
	}
	if err := rawGetpeername(nfd, &s.rsa); err != nil {
		// The peer reset it before we looked (ENOTCONN). It was accepted
		// all the same, as accept4 would have, and is served as such: its
		// first read reports the reset. Its RemoteAddr is unknown (nil).
		s.rsa = unix.RawSockaddrAny{}
	}
	s.backoff = 0
	s.admit(nfd)
}

// ringEnded is s's accept through the ring ending while s listens: the
// kernel stops one at an error (the connections before it stand) or at
// its discretion. Out of descriptors or memory it backs off, as the poll
// path does; after ECONNABORTED and the like, which concern one
// connection, it goes on at once; anything else backs off too, rather
// than spin on an error that stays. (The kernel takes RLIMIT_NOFILE when
// an accept is submitted: a limit changed while one is armed applies from
// its next arm.)
func (s *lsock) ringEnded(res Result) {
	var errno unix.Errno
	switch {
	case res.Err == nil:
	case errors.As(res.Err, &errno):
		s.ln.acceptErrs.Add(1)
		switch errno {
		case unix.ECONNABORTED, unix.EINTR, unix.EAGAIN, unix.EPROTO, unix.EPERM:
		default:
			if errno != unix.EMFILE && errno != unix.ENFILE && errno != unix.ENOBUFS && errno != unix.ENOMEM {
				s.ln.r.cfg.Logger.Sugar().Debugw("reactor: accept", "addr", s.ln.addr, "err", errno)
			}
			s.backOff()
			return
		}
	default: // ended by something other than s's own close (ErrCanceled)
		s.close()
		return
	}
	s.backoff = 0
	s.arm()
}

// drainBacklog accepts every connection already queued, for Shutdown.
func (s *lsock) drainBacklog() {
	for i := 0; i < 1<<16; i++ {
		s.ln.acceptCalls.Add(1)
		nfd, err := rawAccept(s.fd, &s.rsa)
		switch err {
		case nil:
			s.admit(nfd)
		case unix.EINTR, unix.ECONNABORTED:
		default:
			return // EAGAIN: empty; anything else: what is left is reset
		}
	}
}

// timerMoved: s lets superseded backoff entries expire (at most 500 ms).
func (s *lsock) timerMoved(int32) {}

// fire ends an accept backoff.
func (s *lsock) fire(_ *loop, seq uint64, _ int64) {
	if seq == s.timerSeq && !s.closed {
		s.arm()
	}
}

// admit registers the fd rawAccept just returned (its peer's address in
// s.rsa) and hands it to its loop: this one with ReusePort, else the next
// in turn.
func (s *lsock) admit(nfd int) {
	ln := s.ln
	if s.l.stopping || (ln.maxConns > 0 && ln.active.Load() >= int64(ln.maxConns)) {
		ln.refused.Add(1) // before the close: the peer sees the close at once
		unix.Close(nfd)
		return
	}
	if !ln.unix {
		_ = ln.sock.apply(nfd) // best effort, as Go's net
	}
	target := s.l
	if !ln.reusePort {
		loops := ln.r.loops
		target = loops[int(ln.next.Add(1)-1)%len(loops)]
	}
	peer, x := peerOfRaw(&s.rsa)
	ln.adopt(target, nfd, peer, x, target == s.l)
}

// adopt makes a Conn of the connected socket nfd, whose peer is peer (and
// x, its rare part if the address needs one), served by target, and opens
// it: now if the caller runs on target (onTarget), else through
// target's inbox. It returns nil when target had stopped (the reactor
// closing): nfd is closed then.
func (ln *Listener) adopt(target *loop, nfd int, peer peerAddr, x *connRare, onTarget bool) *Conn {
	c := &Conn{l: target, ln: ln, fd: nfd, peer: peer}
	if x != nil {
		c.rare.Store(x)
	}
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
	if onTarget {
		c.open()
		return c
	}
	if !target.postTask(c, taskOpen) {
		// The target loop stopped (reactor closing).
		unix.Close(nfd)
		ln.connClosed(c)
		ln.connDone()
		return nil
	}
	return c
}

// connClosed unlinks a closed Conn and counts it.
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

// newListener makes a Listener's shared state: the Handler, the settings
// of its Conns and their counters. Listen's sockets are added by serve; a
// Listener made for Dial has none.
func (r *Reactor) newListener(addr net.Addr, unixSock bool, h Handler, cfg ListenConfig) *Listener {
	ln := &Listener{
		r: r, h: h, addr: addr, unix: unixSock, reusePort: cfg.ReusePort,
		maxConns: cfg.MaxConns, maxPending: cfg.MaxPending, idle: cfg.IdleTimeout,
		readTimeout: cfg.ReadTimeout, writeTimeout: cfg.WriteTimeout,
		closeTimeout: cfg.CloseTimeout, closedCh: make(chan struct{}),
		sock: sockDefaultsOf(cfg.NoDelay, cfg.KeepAlive),
	}
	if ln.maxPending <= 0 {
		ln.maxPending = 1 << 20
	}
	ln.maxPending = min(ln.maxPending, maxPendingLimit-1) // see Conn.pending
	if ln.closeTimeout <= 0 {
		ln.closeTimeout = 30 * time.Second
	}
	switch ln.linger = cfg.LingerTimeout; {
	case ln.linger == 0:
		ln.linger = defaultLinger
	case ln.linger < 0:
		ln.linger = -1
	}
	return ln
}
