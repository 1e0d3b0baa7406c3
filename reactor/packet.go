//go:build linux

package reactor

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// PacketConn is a UDP socket served by one loop. WriteTo and Close may be
// called from any goroutine.
type PacketConn struct {
	l    *loop // constant
	fd   int   // constant; unusable once closed (checked under mu)
	h    PacketHandler
	addr net.Addr

	mu     sync.Mutex
	closed bool // guarded by mu

	rd       reqHandle // owned by the loop
	finished bool      // owned by the loop: the socket is closed
	closedCh chan struct{}
}

// Packet tasks.
const (
	pcTaskStart int32 = iota + 1
	pcTaskClose
)

// ListenPacket opens a UDP socket ("udp", "udp4", "udp6") served by h.
func (r *Reactor) ListenPacket(network, address string, h PacketHandler) (*PacketConn, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("reactor: listen packet: network %q not supported (udp, udp4, udp6)", network)
	}
	gc, err := (&net.ListenConfig{}).ListenPacket(context.Background(), network, address)
	if err != nil {
		return nil, fmt.Errorf("reactor: listen packet: %w", err)
	}
	fd, err := dupFd(gc.(syscall.Conn))
	addr := gc.LocalAddr()
	if cerr := gc.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("reactor: listen packet: %w", err)
	}
	p := &PacketConn{fd: fd, h: h, addr: addr, closedCh: make(chan struct{})}
	p.l = r.loopFor(fd)
	if !p.l.postTask(p, pcTaskStart) {
		unix.Close(fd)
		return nil, ErrClosed
	}
	return p, nil
}

// Addr returns the bound address.
func (p *PacketConn) Addr() net.Addr { return p.addr }

// WriteTo sends one datagram to to, on the caller's goroutine. It never
// blocks: a full socket buffer returns an error wrapping unix.EAGAIN.
func (p *PacketConn) WriteTo(b []byte, to netip.AddrPort) (int, error) {
	sa := addrPortToSockaddr(to, p.addr)
	if sa == nil {
		return 0, fmt.Errorf("reactor: write to %v: address family does not match %v", to, p.addr)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	for {
		err := unix.Sendto(p.fd, b, 0, sa)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("reactor: write to %v: %w", to, err)
		}
		return len(b), nil
	}
}

// Close stops serving and closes the socket; it waits for the loop unless
// called from a loop callback, where it returns once the close is queued.
func (p *PacketConn) Close() error {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.mu.Unlock()
	if !already {
		if !p.l.postTask(p, pcTaskClose) {
			return nil // the reactor closed it
		}
	}
	if p.l.r.onLoop() {
		return nil
	}
	<-p.closedCh
	return nil
}

// isClosed reports whether Close was asked (or p finished).
func (p *PacketConn) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *PacketConn) runTask(l *loop, task int32) {
	switch task {
	case pcTaskStart:
		l.own(p)
		if p.isClosed() || l.stopping {
			p.finish()
			return
		}
		p.arm()
	case pcTaskClose:
		p.finish()
	}
}

func (p *PacketConn) finish() {
	if p.finished {
		return
	}
	p.finished = true // before closeFdOn: it runs readable, which sees this
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.l.disown(p)
	p.l.closeFdOn(p.fd)
	close(p.closedCh)
}

func (p *PacketConn) arm() {
	// A refused arm completes through readable, which finishes p.
	if err := p.l.armOn(p.fd, In, p, &p.rd); err != nil {
		p.finish()
	}
}

func (p *PacketConn) readable(res Result) {
	p.rd = reqHandle{}
	if p.finished {
		return
	}
	if res.Err != nil {
		p.finish()
		return
	}
	buf := p.l.rbuf
	for i := 0; i < 64; i++ {
		n, from, err := unix.Recvfrom(p.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// EAGAIN: drained. Anything else (an ICMP error queued on
			// the socket) concerns one datagram, not the socket.
			if err != unix.EAGAIN {
				continue
			}
			break
		}
		p.h.OnPacket(p, buf[:n], sockaddrToAddrPort(from))
		if p.isClosed() {
			// The handler closed p (its close task is queued): no
			// OnPacket follows a Close, as no OnData follows a Conn's.
			p.finish()
			return
		}
	}
	p.arm()
}

// A datagram is never cut short: the loop's read buffer holds the largest
// one UDP carries (65,535 bytes less its header), so recvfrom needs no
// MSG_TRUNC. This stops the build if the buffer ever shrinks below that.
const _ uint = readBufSize - 65535

// stopOnLoop closes the socket as the reactor closes.
func (p *PacketConn) stopOnLoop() { p.finish() }
