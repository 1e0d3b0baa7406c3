//go:build linux

package reactor

import (
	"context"
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
	sendInPlace  bool // ListenConfig.SendInPlace
	idle         time.Duration
	readTimeout  time.Duration
	writeTimeout time.Duration
	closeTimeout time.Duration
	linger       time.Duration // < 0: none
	sock         sockDefaults  // applied to accepted TCP sockets; constant
	socks        []*lsock      // constant after Listen
	chunks       outPool       // the Conns' output chunks

	closing  atomic.Bool // Close or Shutdown called: stop accepting
	stopping atomic.Bool // Shutdown or the reactor's Close: drain what is open
	// shutting: Shutdown was called, so a deadline that closes a Conn
	// from now on cuts its drain short (cutInDrain). Not stopping, which
	// the reactor's Close also sets, on every loop at its own time: a
	// Conn that Close ends on one loop after another loop stopped the
	// listener was not in a drain.
	shutting  atomic.Bool
	openSocks atomic.Int32 // sockets not yet closed
	closedCh  chan struct{}
	next      atomic.Uint32 // round-robin cursor over r.loops

	// A Listener keeps no list of its Conns: Shutdown finds them in their
	// loops' lists of the Conns they serve (sweep), where a list of its
	// own cost two links in every Conn, and a lock per accept and close.

	mu      sync.Mutex
	drained chan struct{} // guarded by mu: closed when live drops to 0 during Shutdown

	accepted, refused, closed, bytesIn, bytesOut atomic.Uint64
	refusedWarnAt                                atomic.Int64 // nanotime of warnRefused's last line; 0 = none
	acceptCalls, acceptErrs, backoffs            atomic.Uint64
	bytesDiscarded                               atomic.Uint64 // read from lingering Conns and dropped
	active, paused, live                         atomic.Int64  // live: Conns whose OnClose has not returned
	outBuf                                       atomic.Int64  // capacity of the Conns' output buffers (addOutBuf)
	outBufPeak                                   atomic.Int64  // the most outBuf has been since TakeOutBufferPeak last looked
	cutInDrain                                   atomic.Int64  // Conns a deadline closed after Shutdown was called (shutting)
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
		fd, addr, err := listenFd(network, address, cfg.Backlog, cfg.ReusePort, nil)
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
func listenFd(network, address string, backlog int, reusePort bool, control func(network, address string, c syscall.RawConn) error) (int, net.Addr, error) {
	lc := net.ListenConfig{}
	if reusePort || control != nil {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			if reusePort {
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
				}); err != nil {
					return err
				}
				if serr != nil {
					return serr
				}
			}
			if control != nil {
				return control(network, address, c)
			}
			return nil
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
	if err == nil && backlog > 0 {
		err = unix.Listen(fd, backlog)
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

// addOutBuf adds d to the Conns' output buffer bytes, raising the peak
// TakeOutBufferPeak reports where that is a new high, and returns the new
// value.
func (ln *Listener) addOutBuf(d int64) int64 {
	v := ln.outBuf.Add(d)
	if d <= 0 {
		return v
	}
	for p := ln.outBufPeak.Load(); v > p; p = ln.outBufPeak.Load() {
		if ln.outBufPeak.CompareAndSwap(p, v) {
			break
		}
	}
	return v
}

// TakeOutBufferPeak returns the most ListenerStats.OutBuffer has been
// since the last call (since Listen, the first time), and starts the next
// period at its value now. A program that hands memory back to the kernel
// after a burst of pending output has drained (echod does) needs the
// burst's top: sampling OutBuffer misses a burst that builds and drains
// between two samples. Each call ends a period, so a Listener's peaks are
// for one consumer. A high that a Write makes while a call runs may be
// reported by the next call instead; none is lost.
func (ln *Listener) TakeOutBufferPeak() int64 {
	now := ln.outBuf.Load()
	// A high whose CAS lands after the Swap raises the new period's peak
	// (it is above now, or it was not a high); one before is in the Swap.
	return max(ln.outBufPeak.Swap(now), now)
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
	// Before anything can close a Conn: one the reactor's Close cuts
	// from here on is counted, whichever loop stops when.
	ln.shutting.Store(true)
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
	ln.mu.Unlock()
	ln.sweep(taskShutdown)
	select {
	case <-drained:
		if n := ln.cutInDrain.Load(); n > 0 {
			return fmt.Errorf("%w: %d Conn(s), output discarded", ErrDrainIncomplete, n)
		}
		return nil
	case <-ctx.Done():
	}
	ln.sweep(taskForceStop)
	<-drained // bounded: each loop closes its Conns at once
	return ctx.Err()
}

// adopt makes a Conn of the connected socket nfd, whose peer is peer (and
// x, its rare part if the address needs one), served by target, and opens
// it: now if the caller runs on target (onTarget), else through
// target's inbox. It returns nil when target had stopped (the reactor
// closing): nfd is closed then.
func (ln *Listener) adopt(target *loop, nfd int, peer peerAddr, x *connRare, onTarget bool) *Conn {
	c := &Conn{l: target, ln: ln, fd: int32(nfd), peer: peer}
	if x != nil {
		c.rare.Store(x)
	}
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
		ln.connClosed()
		ln.connDone()
		return nil
	}
	return c
}

// connClosed counts a closed Conn.
func (ln *Listener) connClosed() {
	ln.active.Add(-1)
	ln.closed.Add(1)
}

// sweep runs task (taskShutdown, taskForceStop) for every open Conn of
// ln, each on its loop. A Conn still on its way to its loop is not
// missed: Shutdown sweeps once the listening sockets are closed, so every
// Conn they accepted was opened on the accepting loop, or posted to its
// own loop's inbox before the sweep was, and is open (in l.served) when
// the sweep runs there; and open itself drains a Conn that opens after
// stopping was set. A loop that stopped refuses the sweep, and its own
// stop closed its Conns.
func (ln *Listener) sweep(task int32) {
	for _, l := range ln.r.loops {
		l.postTask(lnSweep{ln}, task)
	}
}

// lnSweep is a sweep's task on one loop.
type lnSweep struct{ ln *Listener }

func (s lnSweep) runTask(l *loop, task int32) {
	// A copy: a task may close Conns, which frees their places.
	for _, c := range l.openConns() {
		if c.ln == s.ln {
			c.runTask(l, task) // a Conn an earlier one closed ignores it
		}
	}
}

// connDone is the end of a Conn's life, after its OnClose: Shutdown returns
// once every Conn got here. Only a Conn that took live to 0 takes mu, and
// it looks at live again there: a Conn accepted after its decrement (from
// the backlog Shutdown drains) may be live by then, and it closes drained
// when it ends. Shutdown makes drained and looks at live under mu too, so
// whichever comes second sees the other's doing.
func (ln *Listener) connDone() {
	if ln.live.Add(-1) != 0 {
		return
	}
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.drained != nil && ln.live.Load() == 0 {
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
		maxConns: cfg.MaxConns, maxPending: cfg.MaxPending, sendInPlace: cfg.SendInPlace, idle: cfg.IdleTimeout,
		readTimeout: cfg.ReadTimeout, writeTimeout: cfg.WriteTimeout,
		closeTimeout: cfg.CloseTimeout, closedCh: make(chan struct{}),
		sock: sockDefaultsOf(cfg.NoDelay, cfg.KeepAlive),
	}
	if ln.maxPending <= 0 {
		ln.maxPending = 1 << 20
	}
	ln.maxPending = min(ln.maxPending, maxPendingLimit-1) // see maxPendingLimit
	if ln.closeTimeout <= 0 {
		ln.closeTimeout = 30 * time.Second
	}
	switch ln.linger = cfg.LingerTimeout; {
	case ln.linger == 0:
		ln.linger = defaultLinger
	case ln.linger < 0:
		ln.linger = -1
	}
	// Each is added to a nanotime to make a deadline (see maxWait).
	for _, d := range []*time.Duration{&ln.idle, &ln.readTimeout, &ln.writeTimeout, &ln.closeTimeout, &ln.linger} {
		*d = min(*d, maxWait)
	}
	return ln
}

// warnRefused says, at most every acceptWarnEvery whichever loop refuses,
// that ln turned a connection away at MaxConns, with n, the connections
// refused so far: a peer closed at once leaves nothing else in the log.
func (ln *Listener) warnRefused(n uint64) {
	now, last := nanotime(), ln.refusedWarnAt.Load()
	if last != 0 && now-last < int64(acceptWarnEvery) || !ln.refusedWarnAt.CompareAndSwap(last, now) {
		return
	}
	ln.r.cfg.Logger.Sugar().Warnw("reactor: connection refused: MaxConns connections open",
		"addr", ln.addr, "max_conns", ln.maxConns, "refused_total", n)
}
