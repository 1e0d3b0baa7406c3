//go:build linux

package reactor

import (
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// NetConn is a stream connection (TCP or Unix) implementing net.Conn on a
// Reactor: Read and Write are nonblocking syscalls that, when the socket
// would block, park the calling goroutine on the reactor with Poll (not on
// Go's runtime netpoller). Deadlines and Close end a parked call at once.
// On a loop whose I/O goes through the ring (Reactor.IOPath "ring"), a
// Read that finds the socket empty parks on a receive of at most len(p)
// bytes instead, and the next Read does too until one fills p: the bytes
// come with the wake-up, sparing the read(2) that found nothing and the
// one after the poll, which is what a request-response connection (HTTP,
// RPC) pays on every request. A deadline or Close that races the bytes
// never loses them: the Read returns them, or they stay in the socket. On
// epoll the fd stays registered, edge-triggered, from one park to the
// next (poller.Edge), so a park costs no epoll_ctl.
// Its methods are safe from any goroutine: Reads are serialized among
// themselves, Writes too (a Write is never interleaved with another), and
// a Read and a Write run concurrently.
//
// NetListener.Accept, Reactor.DialContext and Reactor.FileConn return
// NetConns. TCP ones start with TCP_NODELAY on and keepalive at
// DefaultKeepAlive, as Go's net does.
type NetConn struct {
	fd *netFD
}

var (
	_ net.Conn                        = (*NetConn)(nil)
	_ syscall.Conn                    = (*NetConn)(nil)
	_ interface{ CloseWrite() error } = (*NetConn)(nil)
)

// newNetConn wraps fd, fully built, as a NetConn (collectable).
func newNetConn(fd *netFD) *NetConn {
	fd.collectable()
	return &NetConn{fd: fd}
}

// Read reads up to len(b) bytes, waiting on the reactor until some are
// there, the read deadline passes (an error wrapping
// os.ErrDeadlineExceeded, whose Timeout reports true) or the NetConn is
// closed (an error wrapping net.ErrClosed). The peer's end of stream is
// io.EOF.
func (c *NetConn) Read(b []byte) (int, error) {
	n, err := c.fd.Read(b)
	return n, c.fd.opErr("read", err)
}

// Write writes all of b, waiting on the reactor while the socket's buffer
// is full. When it returns less than len(b), the error says why: the
// write deadline passed, the NetConn was closed, or the peer reset. One
// that wrote all of b returns no error, as net's, even where the deadline
// passed or Close came while it wrote.
func (c *NetConn) Write(b []byte) (int, error) {
	n, err := c.fd.Write(b)
	return n, c.fd.opErr("write", err)
}

// Close closes the connection. Reads and Writes parked on it return at
// once with errors wrapping net.ErrClosed; the fd is closed (by its loop,
// once what the kernel holds for it has completed, as Reactor.CloseFd
// does) when the last of them has returned, so none of them can reach a
// later owner of the fd's number, and Close returns after that close(2)
// (at once when called from a callback on one of this reactor's loops,
// which the loop cannot wait for; from another reactor's loop it waits for
// this one's). Calling it from inside a SyscallConn
// callback, which holds the fd, would wait for itself. A second Close
// returns an error wrapping net.ErrClosed.
func (c *NetConn) Close() error { return c.fd.opErr("close", c.fd.Close()) }

// CloseWrite shuts down the writing side: the peer reads io.EOF once it
// read what was written before.
func (c *NetConn) CloseWrite() error { return c.fd.opErr("close", c.fd.shutdown(unix.SHUT_WR)) }

// CloseRead shuts down the reading side.
func (c *NetConn) CloseRead() error { return c.fd.opErr("close", c.fd.shutdown(unix.SHUT_RD)) }

// LocalAddr returns the local address.
func (c *NetConn) LocalAddr() net.Addr { return c.fd.laddr }

// RemoteAddr returns the peer's address.
func (c *NetConn) RemoteAddr() net.Addr { return c.fd.raddr }

// SetDeadline sets the read and write deadlines, as net.Conn documents: a
// time in the past times out the Read and Write parked now and every later
// one until a new deadline is set; the zero time clears it.
func (c *NetConn) SetDeadline(t time.Time) error {
	return c.fd.opErr("set", c.fd.setDeadline(t, true, true))
}

// SetReadDeadline sets the deadline of Reads, parked ones included.
func (c *NetConn) SetReadDeadline(t time.Time) error {
	return c.fd.opErr("set", c.fd.setDeadline(t, true, false))
}

// SetWriteDeadline sets the deadline of Writes, parked ones included; a
// Write that times out may have written part of its buffer.
func (c *NetConn) SetWriteDeadline(t time.Time) error {
	return c.fd.opErr("set", c.fd.setDeadline(t, false, true))
}

// SetNoDelay turns TCP_NODELAY on (the default: each Write is sent at
// once) or off (Nagle's algorithm coalesces small writes). TCP only.
func (c *NetConn) SetNoDelay(on bool) error {
	return c.fd.opErr("set", c.fd.control(func(fd int) error { return setNoDelay(fd, on) }))
}

// SetKeepAlive turns TCP keepalive probes on or off. TCP only.
func (c *NetConn) SetKeepAlive(on bool) error {
	return c.fd.opErr("set", c.fd.control(func(fd int) error { return setKeepAlive(fd, on) }))
}

// SetKeepAlivePeriod sets the idle time before the first keepalive probe
// and the interval between probes (whole seconds). TCP only.
func (c *NetConn) SetKeepAlivePeriod(d time.Duration) error {
	return c.fd.opErr("set", c.fd.control(func(fd int) error { return setKeepAlivePeriod(fd, d) }))
}

// SetKeepAliveConfig sets keepalive as net.TCPConn's does: probes on or
// off, and the idle time, interval (whole seconds, rounded up) and probe
// count, each 0 for net's default (15 s, 15 s, 9) and negative to leave
// it as it is. A value past the kernel's range (a C int of seconds) is
// refused with EINVAL, where net's truncates it to another value. TCP
// only: on a Unix socket it fails with EOPNOTSUPP and sets nothing.
func (c *NetConn) SetKeepAliveConfig(cfg net.KeepAliveConfig) error {
	return c.fd.opErr("set", c.fd.control(func(fd int) error {
		if err := c.fd.tcpOnly(); err != nil {
			return err
		}
		return setKeepAliveConfig(fd, cfg)
	}))
}

// SetLinger sets what Close does with data not yet sent, as
// net.TCPConn's does: sec < 0 (the default) sends it in the background,
// sec == 0 discards it and resets the connection, sec > 0 sends it in the
// background and resets after sec seconds. TCP only: on a Unix socket it
// fails with EOPNOTSUPP.
func (c *NetConn) SetLinger(sec int) error {
	return c.fd.opErr("set", c.fd.control(func(fd int) error {
		if err := c.fd.tcpOnly(); err != nil {
			return err
		}
		return setLinger(fd, sec)
	}))
}

// SetReadBuffer sets the size of the socket's receive buffer (SO_RCVBUF;
// the kernel doubles it for its bookkeeping), as net's conns do.
func (c *NetConn) SetReadBuffer(bytes int) error {
	return c.fd.opErrLocal("set", c.fd.control(func(fd int) error { return setSockBuf(fd, unix.SO_RCVBUF, bytes) }))
}

// SetWriteBuffer sets the size of the socket's send buffer (SO_SNDBUF;
// the kernel doubles it for its bookkeeping), as net's conns do.
func (c *NetConn) SetWriteBuffer(bytes int) error {
	return c.fd.opErrLocal("set", c.fd.control(func(fd int) error { return setSockBuf(fd, unix.SO_SNDBUF, bytes) }))
}

// SyscallConn returns a raw connection for socket options and custom I/O;
// its Read and Write park on the reactor like NetConn's.
func (c *NetConn) SyscallConn() (syscall.RawConn, error) { return rawConn{c.fd}, nil }

// File returns a copy of the connection's socket, as net.TCPConn's File
// does; closing either leaves the other open.
func (c *NetConn) File() (*os.File, error) {
	f, err := c.fd.file()
	return f, c.fd.opErr("file", err)
}

// rawConn is NetConn's syscall.RawConn.
type rawConn struct{ fd *netFD }

// Control runs f with the fd, held open for f's duration.
func (rc rawConn) Control(f func(fd uintptr)) error {
	return rc.fd.opErr("raw-control", rc.fd.control(func(fd int) error { f(uintptr(fd)); return nil }))
}

// Read calls f until it returns true, waiting for In between calls.
func (rc rawConn) Read(f func(fd uintptr) bool) error {
	return rc.fd.opErr("raw-read", rc.fd.rawIO(&rc.fd.rd, In, f))
}

// Write calls f until it returns true, waiting for Out between calls.
func (rc rawConn) Write(f func(fd uintptr) bool) error {
	return rc.fd.opErr("raw-write", rc.fd.rawIO(&rc.fd.wr, Out, f))
}

// rawIO is RawConn's Read and Write: f under a reference and the
// direction's lock, parking on the reactor while f says it is not done.
func (fd *netFD) rawIO(w *pollWait, ev Events, f func(fd uintptr) bool) error {
	if !fd.ref.incref() {
		return net.ErrClosed
	}
	defer fd.decref()
	mu := &fd.rmu
	if w == &fd.wr {
		mu = &fd.wmu
	}
	mu.Lock()
	defer mu.Unlock()
	for {
		if err := fd.prepare(w); err != nil {
			return err
		}
		if f(uintptr(fd.sysfd)) {
			return nil
		}
		if err := fd.wait(w, ev, false); err != nil {
			return err
		}
	}
}
