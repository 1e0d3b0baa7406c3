//go:build linux

package reactor

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DialContext connects to address on network ("tcp", "tcp4", "tcp6" or
// "unix") and returns a *NetConn served by r. Its signature is
// net.Dialer.DialContext's, so it plugs into http.Transport.DialContext
// and other dial hooks. A TCP address is resolved with net.DefaultResolver
// (NetConfig.Resolver with DialWith; an empty host is the local system),
// and its addresses are tried as
// net.Dialer tries them: in the resolver's order until one connects, each
// given an equal share of the time left before ctx's deadline (at least
// 2s where there is that much); and for "tcp", where the name has
// addresses of both families, those of the family other than the first
// address's are tried alongside from NetConfig.FallbackDelay (300 ms) on,
// or once the first family's have all failed (RFC 6555); the first to
// connect wins. The connect is nonblocking and waits on the reactor with
// Poll. When ctx ends first the dial fails with ctx.Err() in its chain,
// unless an address had failed otherwise before: a dial reports its
// first address's error, as net's does. TCP connections get TCP_NODELAY
// and a keepalive of DefaultKeepAlive, as with net.Dial.
func (r *Reactor) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := r.DialWith(ctx, network, address, NetConfig{})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialWith is DialContext with the socket options of cfg (its Backlog is
// unused), its Control hook, LocalAddr, FallbackDelay and Resolver.
func (r *Reactor) DialWith(ctx context.Context, network, address string, cfg NetConfig) (*NetConn, error) {
	fd, isUnix, err := r.dialFd(ctx, network, address, cfg)
	if err != nil {
		return nil, err
	}
	return r.connected(fd, network, isUnix, cfg), nil
}

// dialFd connects a nonblocking socket to address, trying each address the
// name resolves to in turn (those of LocalAddr's family, if it has an IP),
// waiting with Poll; errors are *net.OpErrors.
func (r *Reactor) dialFd(ctx context.Context, network, address string, cfg NetConfig) (int, bool, error) {
	opErr := func(addr net.Addr, err error) error {
		return &net.OpError{Op: "dial", Net: network, Addr: addr, Err: err}
	}
	// An address's own failure names LocalAddr as its source, as net's.
	attemptErr := func(addr net.Addr, err error) error {
		return &net.OpError{Op: "dial", Net: network, Source: cfg.LocalAddr, Addr: addr, Err: err}
	}
	if r.closed.Load() {
		return -1, false, opErr(nil, errReactorClosed)
	}
	// As net.Dialer: a context already done dials nothing, even where the
	// connect would complete at once (a Unix socket) and no wait would
	// look at the context.
	if err := ctx.Err(); err != nil {
		return -1, false, opErr(nil, err)
	}
	switch network {
	case "unix":
		ua := &net.UnixAddr{Name: address, Net: "unix"}
		var bind unix.Sockaddr
		switch la := cfg.LocalAddr.(type) {
		case nil:
		case *net.UnixAddr:
			if la != nil && la.Name != "" { // "": any, as net, which binds nothing
				bind = &unix.SockaddrUnix{Name: la.Name}
			}
		default:
			return -1, false, opErr(nil, &net.AddrError{Err: "mismatched local address type", Addr: la.String()})
		}
		fd, err := r.connect(ctx, unix.AF_UNIX, &unix.SockaddrUnix{Name: address}, dialPrep(cfg.Control, "unix", address, bind))
		if err != nil {
			return -1, false, attemptErr(ua, err)
		}
		return fd, true, nil
	case "tcp", "tcp4", "tcp6":
	default:
		return -1, false, opErr(nil, net.UnknownNetworkError(network))
	}
	var local *net.TCPAddr
	switch la := cfg.LocalAddr.(type) {
	case nil:
	case *net.TCPAddr:
		local = la
	default:
		return -1, false, opErr(nil, &net.AddrError{Err: "mismatched local address type", Addr: la.String()})
	}
	ips, port, err := resolveTCP(ctx, cfg.Resolver, network, address)
	if err != nil {
		return -1, false, opErr(nil, err)
	}
	var addrs []dialAddr
	for _, ip := range ips {
		if ip.IsUnspecified() && local != nil && len(local.IP) == net.IPv6len && local.IP.To4() == nil && !local.IP.IsUnspecified() {
			ip = netip.IPv6Unspecified() // the local system, in LocalAddr's family, as net
		}
		a := newDialAddr(ip, port)
		var ok bool
		if a.bind, ok = localSockaddr(local, a.family); ok { // else not of LocalAddr's family
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return -1, false, opErr(nil, &net.AddrError{Err: "no suitable address found", Addr: local.String()})
	}
	primaries, fallbacks := addrs, []dialAddr(nil)
	if network == "tcp" && cfg.FallbackDelay >= 0 {
		primaries, fallbacks = splitFamilies(addrs)
	}
	delay := cfg.FallbackDelay
	if delay == 0 {
		delay = defaultFallbackDelay
	}
	fd, err := r.dialParallel(ctx, primaries, fallbacks, delay, func(a dialAddr, err error) error {
		return attemptErr(a.raddr, err)
	}, cfg.Control)
	return fd, false, err
}

// dialAddr is one address a TCP dial tries, as connect takes it.
type dialAddr struct {
	raddr  *net.TCPAddr
	family int
	sa     unix.Sockaddr
	bind   unix.Sockaddr // LocalAddr's, of this family; nil: none
	cnet   string        // "tcp4" or "tcp6", what Control is told
}

// newDialAddr is the dialAddr of ip and port, in ip's family, binding
// nothing.
func newDialAddr(ip netip.Addr, port int) dialAddr {
	a := dialAddr{raddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))), family: unix.AF_INET6, cnet: "tcp6"}
	a.sa = &unix.SockaddrInet6{Port: port, Addr: ip.As16(), ZoneId: zoneID(ip.Zone())}
	if ip.Is4() {
		a.family, a.cnet, a.sa = unix.AF_INET, "tcp4", &unix.SockaddrInet4{Port: port, Addr: ip.As4()}
	}
	return a
}

// defaultFallbackDelay is NetConfig.FallbackDelay's 0, net.Dialer's
// default (RFC 6555 suggests 300 ms).
const defaultFallbackDelay = 300 * time.Millisecond

// splitFamilies splits addrs, in order, into those of the first one's
// family and the rest, as net.Dialer does for its fallback.
func splitFamilies(addrs []dialAddr) (primaries, fallbacks []dialAddr) {
	for _, a := range addrs {
		if a.family == addrs[0].family {
			primaries = append(primaries, a)
		} else {
			fallbacks = append(fallbacks, a)
		}
	}
	return primaries, fallbacks
}

// dialParallel dials primaries one after another and, where there are
// fallbacks (the other family's addresses), starts dialing those too
// once delay has passed or the primaries have all failed, whichever is
// first (RFC 6555, as net.Dialer). The first to connect wins and the
// other is canceled; a loser that connected anyway closes its socket,
// having found the dial returned. When both fail the primaries' error
// is returned. Neither racer outlives the dial by more than its cancel
// (a Poll ends at once on a canceled context or a closed reactor).
func (r *Reactor) dialParallel(ctx context.Context, primaries, fallbacks []dialAddr, delay time.Duration, wrap func(dialAddr, error) error, control func(string, string, syscall.RawConn) error) (int, error) {
	if len(fallbacks) == 0 {
		return r.dialSerial(ctx, primaries, wrap, control)
	}
	type result struct {
		fd      int
		err     error
		primary bool
	}
	returned := make(chan struct{})
	defer close(returned)
	results := make(chan result) // unbuffered: a racer sends, or sees returned
	race := func(ctx context.Context, addrs []dialAddr, primary bool) {
		fd, err := r.dialSerial(ctx, addrs, wrap, control)
		select {
		case results <- result{fd, err, primary}:
		case <-returned:
			if err == nil {
				closePolled(r, fd)
			}
		}
	}
	rctx, cancel := context.WithCancel(ctx) // the loser's end, when the dial returns
	defer cancel()
	go race(rctx, primaries, true)
	timer := time.NewTimer(delay)
	defer timer.Stop()
	running, fallbackStarted := 1, false
	startFallback := func() {
		if !fallbackStarted {
			fallbackStarted = true
			running++
			go race(rctx, fallbacks, false)
		}
	}
	var primaryErr error
	for {
		select {
		case <-timer.C:
			startFallback()
		case res := <-results:
			running--
			if res.err == nil {
				return res.fd, nil // the deferred cancel ends the other racer
			}
			if res.primary {
				primaryErr = res.err
				// A dial that ended (ctx, the reactor's Close) starts
				// no connect: net's checks ctx before each address.
				if dialEnded(ctx) == nil && !errors.Is(res.err, ErrClosed) {
					startFallback()
				}
			}
			if running == 0 { // the primaries' racer, first to start, has answered
				return -1, primaryErr
			}
		}
	}
}

// dialSerial tries addrs in order until one connects, giving each an
// equal share of the time ctx has left (at least minDialShare, or all of
// it where less is left, as net.Dialer), so that an address that drops
// SYNs leaves time for the next. It returns the first attempt's error.
func (r *Reactor) dialSerial(ctx context.Context, addrs []dialAddr, wrap func(dialAddr, error) error, control func(string, string, syscall.RawConn) error) (int, error) {
	var first error
	for i, a := range addrs {
		if err := dialEnded(ctx); err != nil {
			if first == nil {
				first = wrap(a, err)
			}
			break // no socket, no Control call, for a dial that ended
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			actx, cancel = context.WithDeadline(ctx, dialShare(time.Now(), dl, len(addrs)-i))
		}
		fd, err := r.connect(actx, a.family, a.sa, dialPrep(control, a.cnet, a.raddr.String(), a.bind))
		cancel()
		if err == nil {
			return fd, nil
		}
		if first == nil {
			first = wrap(a, err)
		}
		if errors.Is(err, ErrClosed) {
			break // ctx's end is looked at above
		}
	}
	return -1, first
}

// dialEnded is ctx.Err(), or DeadlineExceeded once ctx's deadline has
// passed: a share that ends with the deadline is seen before ctx's own
// timer has canceled it.
func dialEnded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// minDialShare is the least time dialSerial gives one address, where
// there is that much left: net.Dialer's.
const minDialShare = 2 * time.Second

// dialShare is the deadline of the next of n addresses still to try,
// given the dial's deadline.
func dialShare(now, deadline time.Time, n int) time.Time {
	left := deadline.Sub(now)
	share := left / time.Duration(n)
	if share < minDialShare {
		share = min(left, minDialShare)
	}
	return now.Add(share)
}

// localSockaddr is what a dial of family binds to for local (nil: nothing
// to bind), and false where local's IP is of the other family or is no IP.
// A nil or unspecified IP (0.0.0.0, ::) is any address of either family,
// as net has it: its port alone is bound.
func localSockaddr(local *net.TCPAddr, family int) (unix.Sockaddr, bool) {
	if local == nil {
		return nil, true
	}
	ip := local.IP
	switch {
	case ip == nil || ip.IsUnspecified(): // an empty, non-nil IP is no IP
		if family == unix.AF_INET {
			return &unix.SockaddrInet4{Port: local.Port}, true
		}
		return &unix.SockaddrInet6{Port: local.Port}, true
	case ip.To4() != nil:
		if family == unix.AF_INET {
			return &unix.SockaddrInet4{Port: local.Port, Addr: [4]byte(ip.To4())}, true
		}
	case len(ip) == net.IPv6len && family == unix.AF_INET6:
		return &unix.SockaddrInet6{Port: local.Port, Addr: [16]byte(ip), ZoneId: zoneID(local.Zone)}, true
	}
	return nil, false
}

// dialPrep is what connect does to a dial's socket before it connects:
// control's hook (NetConfig.Control), then the bind to LocalAddr.
func dialPrep(control func(network, address string, c syscall.RawConn) error, network, address string, bind unix.Sockaddr) func(fd int) error {
	if control == nil && bind == nil {
		return nil
	}
	return func(fd int) error {
		if control != nil {
			c := &controlConn{fd: fd}
			err := control(network, address, c)
			c.done.Store(true) // a RawConn kept past the hook names no file
			if err != nil {
				return err
			}
		}
		if bind != nil {
			if err := unix.Bind(fd, bind); err != nil {
				return os.NewSyscallError("bind", err)
			}
		}
		return nil
	}
}

// controlConn is the syscall.RawConn a Control hook gets: the socket is
// neither bound nor connected yet, so nothing may read or write it, and
// once the hook returned its number is the conn's (or, after a failure,
// nothing's): Control then refuses, as net's does once its fd closed.
type controlConn struct {
	fd   int
	done atomic.Bool
}

func (c *controlConn) Control(f func(fd uintptr)) error {
	if c.done.Load() {
		return net.ErrClosed
	}
	f(uintptr(c.fd))
	return nil
}

func (*controlConn) Read(func(fd uintptr) bool) error  { return errControlOnly }
func (*controlConn) Write(func(fd uintptr) bool) error { return errControlOnly }

var errControlOnly = errors.New("reactor: a Control hook's RawConn has only Control")

// Dial connects to address ("tcp", "tcp4", "tcp6" or "unix") and serves the
// connection with h on one of r's loops, as a Listener serves one it
// accepted: for a callback server that also opens connections, such as a
// proxy's upstream side. cfg applies as for Listen (MaxPending, the
// timeouts, LingerTimeout, NoDelay, KeepAlive; MaxConns, Backlog and
// ReusePort do not). OnOpen runs on the Conn's loop, possibly before Dial
// returns; the Conn may be written to at once. An error means no
// connection: h is never called.
func (r *Reactor) Dial(ctx context.Context, network, address string, h Handler, cfg ListenConfig) (*Conn, error) {
	fd, isUnix, err := r.dialFd(ctx, network, address, NetConfig{})
	if err != nil {
		return nil, err
	}
	ln := r.newListener(nil, isUnix, h, cfg)
	ln.openSocks.Store(0)
	close(ln.closedCh)
	if !isUnix {
		_ = ln.sock.apply(fd) // best effort, as net
	}
	sa, _ := unix.Getpeername(fd) // nil on failure: RemoteAddr is then the zero address
	p, x := peerOf(sa)
	c := ln.adopt(r.loopFor(fd), fd, p, x, false)
	if c == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: ErrClosed}
	}
	return c, nil
}

// resolveTCP resolves a "host:port" for network with res (nil:
// net.DefaultResolver).
func resolveTCP(ctx context.Context, res *net.Resolver, network, address string) ([]netip.Addr, int, error) {
	host, service, err := net.SplitHostPort(address)
	if err != nil {
		return nil, 0, err
	}
	if res == nil {
		res = net.DefaultResolver
	}
	port, err := res.LookupPort(ctx, network, service)
	if err != nil {
		return nil, 0, err
	}
	var ips []netip.Addr
	if host == "" {
		// The local system, as net.Dial: connecting to the unspecified
		// address reaches it.
		ips = []netip.Addr{netip.IPv4Unspecified()}
		if network == "tcp6" {
			ips[0] = netip.IPv6Unspecified()
		}
		return ips, port, nil
	}
	ipnet := "ip"
	switch network {
	case "tcp4":
		ipnet = "ip4"
	case "tcp6":
		ipnet = "ip6"
	}
	found, err := res.LookupNetIP(ctx, ipnet, host)
	if err != nil {
		return nil, 0, err
	}
	for _, ip := range found {
		if ip.Is4In6() {
			ip = ip.Unmap()
		}
		if (network == "tcp4" && !ip.Is4()) || (network == "tcp6" && ip.Is4()) {
			continue
		}
		ips = append(ips, ip)
	}
	if len(ips) == 0 {
		return nil, 0, &net.AddrError{Err: "no suitable address found", Addr: host}
	}
	return ips, port, nil
}

func zoneID(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	n, _ := strconv.ParseUint(zone, 10, 32)
	return uint32(n)
}

// connect opens a nonblocking stream socket and connects it to sa, waiting
// for Out on the reactor while the handshake runs. It returns the
// connected fd, or the connect error after closing the fd.
func (r *Reactor) connect(ctx context.Context, family int, sa unix.Sockaddr, prep func(fd int) error) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if prep != nil {
		if err := prep(fd); err != nil {
			unix.Close(fd) // never polled
			return -1, err
		}
	}
	switch err := unix.Connect(fd, sa); err {
	case nil:
		return fd, nil
	case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
	default:
		unix.Close(fd) // never polled: nothing of it is on the reactor
		return -1, os.NewSyscallError("connect", err)
	}
	for {
		if _, err := r.Poll(ctx, fd, Out); err != nil {
			closePolled(r, fd)
			if errors.Is(err, ErrClosed) {
				return -1, errReactorClosed
			}
			return -1, err
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			closePolled(r, fd)
			return -1, os.NewSyscallError("getsockopt", err)
		}
		switch e := unix.Errno(soerr); e {
		case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
			continue
		case 0, unix.EISCONN:
			// Out can come before the handshake finished (net's issues
			// 14548 and 19289): connected only if there is a peer.
			if _, err := unix.Getpeername(fd); err == nil {
				return fd, nil
			}
		default:
			closePolled(r, fd)
			return -1, os.NewSyscallError("connect", e)
		}
	}
}

// closePolled closes an fd that was polled through r, so that the loop
// first completes whatever the kernel still holds for it.
func closePolled(r *Reactor, fd int) {
	if r.CloseFd(fd) != nil {
		unix.Close(fd) // the reactor closed: nothing of fd is left there
	}
}

// closePolledWait is closePolled that returns once fd is closed; not for a
// loop goroutine. A loop that stops runs the tasks it took (loop.stop).
func closePolledWait(r *Reactor, fd int) {
	done := make(chan struct{})
	if r.closeFd(fd, done) != nil {
		unix.Close(fd) // the reactor closed: nothing of fd is left there
		return
	}
	<-done
}

// fdCloser is closeFd's task where the caller waits: what CloseFd's
// command does, then done closed.
type fdCloser struct {
	fd   int
	done chan struct{}
}

func (t fdCloser) runTask(l *loop, _ int32) {
	l.closeFdOn(t.fd)
	close(t.done)
}

// connected wraps a connected fd as a NetConn with the socket defaults.
func (r *Reactor) connected(fd int, network string, isUnix bool, cfg NetConfig) *NetConn {
	if !isUnix {
		_ = cfg.sock().apply(fd) // best effort, as net
	}
	var laddr, raddr net.Addr
	if sa, err := unix.Getsockname(fd); err == nil {
		laddr = sockaddrToAddr(sa, isUnix)
	}
	if sa, err := unix.Getpeername(fd); err == nil {
		raddr = sockaddrToAddr(sa, isUnix)
	}
	return newNetConn(newNetFD(r, fd, network, laddr, raddr))
}
