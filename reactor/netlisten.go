//go:build linux

package reactor

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// NetListener is a net.Listener on a Reactor: Accept parks on the reactor
// with Poll until a connection is queued, and returns *NetConns. Its
// methods are safe from any goroutine.
type NetListener struct {
	fd    *netFD
	stats *netStats    // constant
	sock  sockDefaults // applied to accepted TCP connections; constant
	unix  bool         // constant
}

var _ net.Listener = (*NetListener)(nil)

func (c NetConfig) sock() sockDefaults { return sockDefaultsOf(c.NoDelay, c.KeepAlive) }

// NetListen listens on network ("tcp", "tcp4", "tcp6" or "unix") at address,
// resolved as net.Listen resolves it, and returns a net.Listener whose
// connections are *NetConns served by r: net/http, crypto/tls and other
// libraries written against net.Listener and net.Conn run on the reactor
// unchanged. Accepted TCP connections get TCP_NODELAY and a keepalive of
// DefaultKeepAlive, as with net.Listen. A Unix socket's path is removed
// when the listener closes.
func (r *Reactor) NetListen(network, address string) (net.Listener, error) {
	ln, err := r.NetListenWith(network, address, NetConfig{})
	if err != nil {
		return nil, err
	}
	return ln, nil
}

// NetListenWith is NetListen with the socket options of cfg.
func (r *Reactor) NetListenWith(network, address string, cfg NetConfig) (*NetListener, error) {
	if r.closed.Load() {
		return nil, &net.OpError{Op: "listen", Net: network, Err: errReactorClosed}
	}
	switch network {
	case "tcp", "tcp4", "tcp6", "unix":
	default:
		return nil, &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
	}
	sysfd, addr, err := listenFd(network, address, cfg.Backlog, false, cfg.Control)
	if err != nil {
		return nil, err // net's *OpError already
	}
	ln := newNetListener(r, sysfd, network, addr)
	ln.sock = cfg.sock()
	if ua, ok := addr.(*net.UnixAddr); ok && ua.Name != "" && ua.Name[0] != '@' {
		ln.fd.unlink = ua.Name
	}
	return ln, nil
}

func newNetListener(r *Reactor, sysfd int, network string, addr net.Addr) *NetListener {
	fd := newNetFD(r, sysfd, network, addr, nil)
	fd.listener = true
	fd.collectable()
	return &NetListener{fd: fd, stats: newNetStats(), sock: NetConfig{}.sock(), unix: network == "unix"}
}

// Accept waits on the reactor for the next connection and returns it as a
// *NetConn. After Close it returns an error wrapping net.ErrClosed;
// running out of descriptors is an error whose Temporary reports true, on
// which net/http's Serve backs off.
func (ln *NetListener) Accept() (net.Conn, error) {
	c, err := ln.AcceptNet()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptNet is Accept returning the concrete type.
func (ln *NetListener) AcceptNet() (*NetConn, error) {
	nfd, sa, err := ln.fd.accept()
	if err != nil {
		ln.stats.acceptFailed(err)
		return nil, ln.fd.opErr("accept", err)
	}
	if !ln.unix {
		_ = ln.sock.apply(nfd) // best effort, as net
	}
	laddr := ln.fd.laddr
	if lsa, err := unix.Getsockname(nfd); err == nil {
		laddr = sockaddrToAddr(lsa, ln.unix)
	}
	fd := newNetFD(ln.fd.r, nfd, ln.fd.net, laddr, sockaddrToAddr(sa, ln.unix))
	ln.stats.adopt(fd)
	return newNetConn(fd), nil
}

// Close stops listening. A parked Accept returns an error wrapping
// net.ErrClosed. When Close returns the socket no longer listens (the
// port can be bound again), unless a copy from File holds it, and a Unix
// socket's path is removed.
func (ln *NetListener) Close() error { return ln.fd.opErr("close", ln.fd.Close()) }

// SetUnlinkOnClose sets whether Close removes the path of a Unix socket
// NetListen bound, as net.UnixListener's does (true by default). A
// process that hands a Unix listener on (File) sets false, so that the
// path still leads to the copy. The path of a socket adopted
// (FileListener) is never removed, and TCP has none.
func (ln *NetListener) SetUnlinkOnClose(unlink bool) { ln.fd.keepPath.Store(!unlink) }

// Addr returns the bound address (with the port the kernel chose for :0).
func (ln *NetListener) Addr() net.Addr { return ln.fd.laddr }

// File returns a copy of the listening socket, as net.TCPListener's File
// does: for a process that hands its listeners on (a graceful restart).
// Closing the copy leaves the listener listening, and closing the
// listener (Close, or http.Server.Shutdown) leaves the copy listening: the
// loop waits for the kernel to end the listener's in-flight requests,
// which hold the socket (liburing #932), and then closes its descriptor
// without shutting the socket down.
func (ln *NetListener) File() (*os.File, error) {
	f, err := ln.fd.file()
	return f, ln.fd.opErr("file", err)
}

// SyscallConn returns the listening socket's raw connection, for its
// options (Control), as net.TCPListener's does.
func (ln *NetListener) SyscallConn() (syscall.RawConn, error) { return rawConn{ln.fd}, nil }

// SetDeadline sets the deadline of Accept, as net.TCPListener's.
func (ln *NetListener) SetDeadline(t time.Time) error {
	return ln.fd.opErr("set", ln.fd.setDeadline(t, true, false))
}

// FileListener returns a listener on a copy of f's listening stream socket
// (TCP or Unix), for a socket the process inherited (systemd socket
// activation: fd 3 and up, LISTEN_FDS). Closing the listener does not
// close f, and closing f does not stop the listener. The copy is made
// nonblocking, which also affects f (they share one open file).
func (r *Reactor) FileListener(f *os.File) (net.Listener, error) {
	sysfd, network, laddr, err := adoptFd(f, true)
	if err != nil {
		return nil, &net.OpError{Op: "file", Net: "file+net", Source: nil, Addr: fileAddr(f.Name()), Err: err}
	}
	return newNetListener(r, sysfd, network, laddr), nil
}

// FileConn returns a connection on a copy of f's connected stream socket
// (TCP or Unix), served by r. Closing the connection does not close f.
// TCP connections get the same defaults as accepted ones.
func (r *Reactor) FileConn(f *os.File) (net.Conn, error) {
	sysfd, network, laddr, err := adoptFd(f, false)
	if err != nil {
		return nil, &net.OpError{Op: "file", Net: "file+net", Addr: fileAddr(f.Name()), Err: err}
	}
	var raddr net.Addr
	if sa, err := unix.Getpeername(sysfd); err == nil {
		raddr = sockaddrToAddr(sa, network == "unix")
	}
	if network != "unix" {
		_ = NetConfig{}.sock().apply(sysfd) // best effort, as net
	}
	return newNetConn(newNetFD(r, sysfd, network, laddr, raddr)), nil
}

// adoptFd dups f's socket (close-on-exec, nonblocking) after checking that
// it is a stream socket of a supported family, listening iff listening.
func adoptFd(f *os.File, listening bool) (int, string, net.Addr, error) {
	if f == nil {
		return -1, "", nil, os.ErrInvalid
	}
	sysfd, err := dupFd(f)
	if err != nil {
		return -1, "", nil, err
	}
	fail := func(err error) (int, string, net.Addr, error) {
		unix.Close(sysfd)
		return -1, "", nil, err
	}
	typ, err := unix.GetsockoptInt(sysfd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fail(os.NewSyscallError("getsockopt", err))
	}
	if typ != unix.SOCK_STREAM {
		return fail(fmt.Errorf("reactor: socket type %d is not SOCK_STREAM", typ))
	}
	acc, err := unix.GetsockoptInt(sysfd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return fail(os.NewSyscallError("getsockopt", err))
	}
	if (acc != 0) != listening {
		if listening {
			return fail(fmt.Errorf("reactor: socket is not listening"))
		}
		return fail(fmt.Errorf("reactor: socket is listening, not connected"))
	}
	sa, err := unix.Getsockname(sysfd)
	if err != nil {
		return fail(os.NewSyscallError("getsockname", err))
	}
	switch sa.(type) {
	case *unix.SockaddrInet4, *unix.SockaddrInet6:
		return sysfd, "tcp", sockaddrToAddr(sa, false), nil
	case *unix.SockaddrUnix:
		return sysfd, "unix", sockaddrToAddr(sa, true), nil
	}
	return fail(fmt.Errorf("reactor: socket family %T not supported (tcp, unix)", sa))
}

// fileAddr names an *os.File in errors, as net's file functions do.
type fileAddr string

func (fileAddr) Network() string  { return "file+net" }
func (f fileAddr) String() string { return string(f) }
