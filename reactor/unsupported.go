//go:build !linux

package reactor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"time"
)

// The reactor needs epoll or io_uring: on any other GOOS New reports
// errLinuxOnly (wrapping ErrUnavailable), and the rest of the API exists so
// that a program importing the package builds; none of it can be reached
// without a Reactor. A service that must also run elsewhere falls back to
// the standard library itself when New fails: net.Listen for NetListen,
// net.Dialer.DialContext for DialContext.
var errLinuxOnly = fmt.Errorf("%w: the reactor runs on Linux only (epoll or io_uring), not on %s", ErrUnavailable, runtime.GOOS)

// Reactor is a set of event loops; see the Linux build.
type Reactor struct{}

// New reports that the reactor is Linux-only.
func New(cfg Config) (*Reactor, error) { return nil, errLinuxOnly }

func (r *Reactor) Backend() Backend      { return "" }
func (r *Reactor) BackendReason() string { return errLinuxOnly.Error() }
func (r *Reactor) Loops() int            { return 0 }
func (r *Reactor) Close() error          { return nil }
func (r *Reactor) CloseFd(fd int) error  { return errLinuxOnly }
func (r *Reactor) Stats() Stats          { return Stats{} }
func (r *Reactor) IOPath() string        { return "" }
func (r *Reactor) Arm(fd int, ev Events, cb func(Result)) (*Request, error) {
	return nil, errLinuxOnly
}
func (r *Reactor) ArmDeadline(fd int, ev Events, deadline time.Time, cb func(Result)) (*Request, error) {
	return nil, errLinuxOnly
}
func (r *Reactor) ArmRequest(q *Request, fd int, ev Events, cb func(Result)) error {
	return errLinuxOnly
}
func (r *Reactor) Poll(ctx context.Context, fd int, ev Events) (Events, error) {
	return 0, errLinuxOnly
}
func (r *Reactor) Listen(network, address string, h Handler, cfg ListenConfig) (*Listener, error) {
	return nil, errLinuxOnly
}
func (r *Reactor) ListenFile(f *os.File, h Handler, cfg ListenConfig) (*Listener, error) {
	return nil, errLinuxOnly
}
func (r *Reactor) Dial(ctx context.Context, network, address string, h Handler, cfg ListenConfig) (*Conn, error) {
	return nil, errLinuxOnly
}
func (r *Reactor) ListenPacket(network, address string, h PacketHandler) (*PacketConn, error) {
	return nil, errLinuxOnly
}
func (r *Reactor) NetListen(network, address string) (net.Listener, error) {
	return nil, errLinuxOnly
}
func (r *Reactor) NetListenWith(network, address string, cfg NetConfig) (*NetListener, error) {
	return nil, errLinuxOnly
}
func (r *Reactor) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return nil, errLinuxOnly
}
func (r *Reactor) DialWith(ctx context.Context, network, address string, cfg NetConfig) (*NetConn, error) {
	return nil, errLinuxOnly
}
func (r *Reactor) FileListener(f *os.File) (net.Listener, error) { return nil, errLinuxOnly }
func (r *Reactor) FileConn(f *os.File) (net.Conn, error)         { return nil, errLinuxOnly }

// Request is one armed poll; see the Linux build.
type Request struct{}

func (q *Request) Cancel() bool { return false }

// Conn is one accepted connection; see the Linux build.
type Conn struct{}

func (c *Conn) Close() error                { return ErrClosed }
func (c *Conn) CloseNow() error             { return ErrClosed }
func (c *Conn) CloseWrite() error           { return ErrClosed }
func (c *Conn) Context() any                { return nil }
func (c *Conn) SetContext(v any)            {}
func (c *Conn) Fd() int                     { return -1 }
func (c *Conn) LocalAddr() net.Addr         { return nil }
func (c *Conn) RemoteAddr() net.Addr        { return nil }
func (c *Conn) Pending() int                { return 0 }
func (c *Conn) String() string              { return "conn(unsupported)" }
func (c *Conn) Write(b []byte) (int, error) { return 0, ErrClosed }

// Listener serves stream connections; see the Linux build.
type Listener struct{}

func (ln *Listener) Addr() net.Addr                     { return nil }
func (ln *Listener) Close() error                       { return nil }
func (ln *Listener) CloseAsync()                        {}
func (ln *Listener) Shutdown(ctx context.Context) error { return nil }
func (ln *Listener) Stats() ListenerStats               { return ListenerStats{} }

// PacketConn is a UDP socket served by a loop; see the Linux build.
type PacketConn struct{}

func (p *PacketConn) Addr() net.Addr { return nil }
func (p *PacketConn) Close() error   { return nil }
func (p *PacketConn) WriteTo(b []byte, to netip.AddrPort) (int, error) {
	return 0, ErrClosed
}

// NetConn is a net.Conn served by a reactor; see the Linux build.
type NetConn struct{}

var _ net.Conn = (*NetConn)(nil)

func (c *NetConn) Close() error                                 { return net.ErrClosed }
func (c *NetConn) CloseRead() error                             { return net.ErrClosed }
func (c *NetConn) CloseWrite() error                            { return net.ErrClosed }
func (c *NetConn) LocalAddr() net.Addr                          { return nil }
func (c *NetConn) RemoteAddr() net.Addr                         { return nil }
func (c *NetConn) Read(b []byte) (int, error)                   { return 0, net.ErrClosed }
func (c *NetConn) Write(b []byte) (int, error)                  { return 0, net.ErrClosed }
func (c *NetConn) SetDeadline(t time.Time) error                { return net.ErrClosed }
func (c *NetConn) SetReadDeadline(t time.Time) error            { return net.ErrClosed }
func (c *NetConn) SetWriteDeadline(t time.Time) error           { return net.ErrClosed }
func (c *NetConn) SetKeepAlive(on bool) error                   { return net.ErrClosed }
func (c *NetConn) SetKeepAlivePeriod(d time.Duration) error     { return net.ErrClosed }
func (c *NetConn) SetNoDelay(on bool) error                     { return net.ErrClosed }
func (c *NetConn) SetKeepAliveConfig(net.KeepAliveConfig) error { return net.ErrClosed }
func (c *NetConn) SetLinger(sec int) error                      { return net.ErrClosed }
func (c *NetConn) SetReadBuffer(bytes int) error                { return net.ErrClosed }
func (c *NetConn) SetWriteBuffer(bytes int) error               { return net.ErrClosed }
func (c *NetConn) ReadFrom(r io.Reader) (int64, error)          { return 0, net.ErrClosed }
func (c *NetConn) SyscallConn() (syscall.RawConn, error)        { return nil, errors.ErrUnsupported }
func (c *NetConn) File() (*os.File, error)                      { return nil, errors.ErrUnsupported }

// NetListener is a net.Listener served by a reactor; see the Linux build.
type NetListener struct{}

var _ net.Listener = (*NetListener)(nil)

func (ln *NetListener) Accept() (net.Conn, error)     { return nil, net.ErrClosed }
func (ln *NetListener) AcceptNet() (*NetConn, error)  { return nil, net.ErrClosed }
func (ln *NetListener) Addr() net.Addr                { return nil }
func (ln *NetListener) Close() error                  { return nil }
func (ln *NetListener) SetDeadline(t time.Time) error { return net.ErrClosed }
func (ln *NetListener) SetUnlinkOnClose(unlink bool)  {}
func (ln *NetListener) Stats() ListenerStats          { return ListenerStats{} }
func (ln *NetListener) File() (*os.File, error)       { return nil, errors.ErrUnsupported }
func (ln *NetListener) SyscallConn() (syscall.RawConn, error) {
	return nil, errors.ErrUnsupported
}
