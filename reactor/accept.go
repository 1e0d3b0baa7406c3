//go:build linux

package reactor

import (
	"errors"
	"time"

	"github.com/oneshot-io/oneshot/cancel"
	"golang.org/x/sys/unix"
)

// The accepting side of a Listener: each listening socket (lsock) lives
// on one loop, accepts through a poll and accept4, or through the ring
// with one multishot ACCEPT, and hands each connection to a loop
// (admit, adopt).

// lsock is one listening socket of a Listener, owned by the loop that
// accepts on it.
type lsock struct {
	ln *Listener
	l  *loop // constant
	fd int   // constant; closed on l

	// Owned by l.
	acceptTag reqHandle
	backoff   time.Duration
	resumeAt  int64 // nanotime at which a backoff ends (l.backoffs); 0 = none
	streak    int   // backoffs since a connection was last accepted
	warnedAt  int64 // nanotime of the last warning that accepting failed; 0 = none
	warned    bool  // this streak's start was logged: its end is too
	closed    bool
	// draining: Shutdown canceled s's accept through the ring, and drains
	// the backlog at its end.
	draining bool
	rsa      unix.RawSockaddrAny // the peer's address buffer (rawAccept, rawGetpeername)
}

// throughRing reports whether s accepts with a multishot accept through
// the ring (acceptedOne) rather than after polls: wherever its loop has
// the ring's I/O path, which is fixed once the loop started.
func (s *lsock) throughRing() bool { return s.l.rcv != nil }

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
		if s.throughRing() && !s.acceptTag.IsZero() && !s.closed {
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
	if s.throughRing() {
		ev = evAccept | In
		s.ln.acceptCalls.Add(1)
	}
	// A refused arm completes through acceptable, which closes s.
	if err := s.l.armOn(s.fd, ev, s, &s.acceptTag); err != nil {
		s.ln.r.cfg.Logger.Sugar().Debugw("reactor: arm listener", "addr", s.ln.addr, "err", err)
		s.close()
	}
}

func (s *lsock) close() { s.stop(true) }

// stop ends s; own says whether s.fd is still s's socket, to close once
// the kernel holds nothing of it (settle). It is not after EBADF or
// ENOTSOCK (stopBroken): somebody closed the number behind the reactor's
// back, and it may name another file now.
func (s *lsock) stop(own bool) {
	if s.closed {
		return
	}
	s.closed = true
	s.resumeAt = 0 // a backoff's end finds nothing to do
	s.l.disown(s)
	s.l.forgetFdOn(s.fd)
	if own {
		s.l.settle(s.fd)
		_ = unix.Close(s.fd) // EINTR/EIO on close still release the descriptor
	}
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
	if res.Events&evAccept != 0 {
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
	if s.throughRing() {
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
			s.accepting()
			s.arm()
			return
		default:
			ln.acceptErrs.Add(1)
			errno, _ := err.(unix.Errno)
			if exhausted(errno) {
				s.backOff(errno)
				return
			}
			if broken(errno) {
				s.stopBroken(errno)
				return
			}
			ln.r.cfg.Logger.Sugar().Debugw("reactor: accept", "addr", ln.addr, "err", err)
			continue
		}
		s.accepting()
		s.admit(nfd)
	}
	s.arm() // more may be queued; let other fds have a turn first
}

// backOff waits before accepting again. Out of descriptors or memory
// (libuv #690), the pending connection stays queued and the socket stays
// readable, so re-arming now would spin. Wait, doubling up to a bound. A
// streak of backoffs is logged (at most one warning every acceptWarnEvery),
// as its end is (accepting): clients meanwhile wait or time out, and the
// counters alone do not say why.
func (s *lsock) backOff(errno unix.Errno) {
	s.ln.backoffs.Add(1)
	now := nanotime()
	// Not only at a streak's first backoff: descriptors run out in
	// flaps, and a streak that began within acceptWarnEvery of the last
	// warning is logged once that much has passed.
	if !s.warned && (s.warnedAt == 0 || now-s.warnedAt >= int64(acceptWarnEvery)) {
		s.warnedAt, s.warned = now, true
		s.ln.r.cfg.Logger.Sugar().Warnw("reactor: accepting failed; backing off until it works again",
			"addr", s.ln.addr, "err", errno, "backoff_max", backoffMax)
	}
	s.streak++
	s.backoff = min(max(2*s.backoff, backoffMin), backoffMax)
	if s.resumeAt == 0 {
		s.l.backoffs = append(s.l.backoffs, s)
	}
	s.resumeAt = now + int64(s.backoff)
}

// accepting notes that s accepts again: a connection came, or the backlog
// was found empty. It ends a streak of backoffs, and says so where its
// start was logged.
func (s *lsock) accepting() {
	if s.warned {
		s.ln.r.cfg.Logger.Sugar().Infow("reactor: accepting again", "addr", s.ln.addr, "backoffs", s.streak)
	}
	s.backoff, s.streak, s.warned = 0, 0, false
}

// acceptWarnEvery bounds how often a listening socket warns that accepting
// failed (backOff), and a Listener that it refused connections (admit).
const acceptWarnEvery = 10 * time.Second

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
	// An error means the peer reset it before we looked (ENOTCONN). It
	// was accepted all the same, as accept4 would have, and is served as
	// such: its first read reports the reset. rsa is left clear, so its
	// RemoteAddr is the zero address.
	_ = rawGetpeername(nfd, &s.rsa)
	s.accepting()
	s.admit(nfd)
}

// ringEnded is s's accept through the ring ending while s listens: the
// kernel stops one at an error (the connections before it stand) or at
// its discretion. After ECONNABORTED and the like, which concern one
// connection, it goes on at once; out of descriptors or memory it backs
// off, as the poll path does, and after any other error too, rather than
// spin on an error that stays; a socket that can no longer accept
// (broken) stops, as on the poll path. (The kernel takes RLIMIT_NOFILE
// when an accept is submitted: a limit changed while one is armed applies
// from its next arm.)
func (s *lsock) ringEnded(res Result) {
	var errno unix.Errno
	switch {
	case res.Err == nil:
	case !errors.As(res.Err, &errno): // ended by something other than s's own close (ErrCanceled)
		s.close()
		return
	case errno == unix.ECONNABORTED || errno == unix.EINTR || errno == unix.EAGAIN ||
		errno == unix.EPROTO || errno == unix.EPERM:
		s.ln.acceptErrs.Add(1)
	case broken(errno):
		s.ln.acceptErrs.Add(1)
		s.stopBroken(errno)
		return
	default:
		s.ln.acceptErrs.Add(1)
		if !exhausted(errno) {
			s.ln.r.cfg.Logger.Sugar().Debugw("reactor: accept", "addr", s.ln.addr, "err", errno)
		}
		s.backOff(errno)
		return
	}
	s.accepting()
	s.arm()
}

// broken reports an accept error that says the listening socket itself
// can no longer accept: it is no longer listening (shut down through
// another descriptor of it, say) or not a socket. Every accept would fail
// the same way at once, and a shut-down socket polls readable for good, so
// trying again spins.
func broken(errno unix.Errno) bool {
	switch errno {
	case unix.EINVAL, unix.EBADF, unix.ENOTSOCK, unix.EFAULT:
		return true
	}
	return false
}

// stopBroken stops serving s after an error that ends it (broken), as a
// failed poll of it does, and says so at error level: the Listener's other
// sockets, its Conns and its Close are as before.
func (s *lsock) stopBroken(errno unix.Errno) {
	s.ln.r.cfg.Logger.Sugar().Errorw("reactor: listening socket stopped accepting", "addr", s.ln.addr, "err", errno)
	s.stop(errno != unix.EBADF && errno != unix.ENOTSOCK)
}

// exhausted reports an accept error that says the process or the system
// is out of descriptors or memory: the connection stays queued, so the
// listener backs off (backOff) instead of trying again at once.
func exhausted(errno unix.Errno) bool {
	switch errno {
	case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
		return true
	}
	return false
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

// admit registers the fd rawAccept just returned (its peer's address in
// s.rsa) and hands it to its loop: this one with ReusePort, else the next
// in turn.
func (s *lsock) admit(nfd int) {
	ln := s.ln
	if s.l.stopping || (ln.maxConns > 0 && ln.active.Load() >= int64(ln.maxConns)) {
		n := ln.refused.Add(1) // before the close: the peer sees the close at once
		unix.Close(nfd)
		if !s.l.stopping {
			ln.warnRefused(n)
		}
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

// handOver gives the connection an accept through the ring opened (fd) to
// the accept's owner, its callback, which keeps it or closes it. As with a
// receive's bytes, cancel says whether the request still takes it
// (MustConsume whatever its outcome, while the kernel owes its end), so
// one accepted after the accept was canceled, or after the listening
// socket began closing, still reaches its owner, which closes it. Where no
// owner takes it, it is closed here: a descriptor the kernel opened for us
// is never left open.
func (l *loop) handOver(h reqHandle, ok bool, fd int) {
	if !ok || !h.Received().Has(cancel.MustConsume) || h.Data().ev&evAccept == 0 {
		unix.Close(fd)
		return
	}
	l.accepted = fd
	l.enterUser() // the callback opens the Conn: OnOpen runs
	h.Data().owner.(*lsock).acceptable(Result{Events: evAccept})
	if l.accepted >= 0 {
		panic("reactor: an accept's owner did not take the connection it was handed")
	}
}

// takeAccepted returns the descriptor handOver hands the callback running.
func (l *loop) takeAccepted() int {
	fd := l.accepted
	l.accepted = -1
	return fd
}
