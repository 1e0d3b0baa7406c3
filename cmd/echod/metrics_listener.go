//go:build linux

package main

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The metrics server shares echod's descriptors with the echo listeners,
// and without bounds an idle client could hold a metrics connection open
// for ever: 243 idle keep-alive /healthz connections under a 256-descriptor
// limit left echo nothing to accept with. So the metrics server holds at
// most metricsMaxConns connections (the rest wait unaccepted in the
// kernel's queue, which costs echod no descriptor), its http.Server times
// idle and slow connections out, and it never takes one of the last
// descriptors below the limit, which stay for the echo listeners.
const (
	// metricsMaxConns is the most connections the metrics server holds
	// at once: a scraper or two and a person with curl.
	metricsMaxConns = 16
	// metricsFDReserve is how many descriptors below RLIMIT_NOFILE the
	// metrics server leaves to the echo listeners (a quarter of the limit
	// where that is less).
	metricsFDReserve = 64
)

// capListener is a net.Listener that holds at most cap(slots) accepted
// connections open at once and refuses (closes at once) a connection whose
// descriptor falls within reserve of the descriptor limit. Accept blocks
// while every slot is taken, until a connection closes or the listener
// does.
type capListener struct {
	net.Listener
	slots   chan struct{}     // one token per open connection
	done    chan struct{}     // closed by Close: wakes a blocked Accept
	once    sync.Once         // guards close(done)
	reserve func() (int, int) // the descriptor limit and the reserve below it
	refused atomic.Uint64     // connections closed at once for the reserve
}

func newCapListener(l net.Listener, maxConns int) *capListener {
	return &capListener{
		Listener: l,
		slots:    make(chan struct{}, maxConns),
		done:     make(chan struct{}),
		reserve:  fdReserve,
	}
}

// fdReserve returns the soft descriptor limit and the reserve kept below
// it for the echo listeners.
func fdReserve() (limit, reserve int) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 1 << 30, 0 // unknown or practically unlimited
	}
	limit = int(rl.Cur)
	return limit, min(metricsFDReserve, limit/4)
}

func (l *capListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		// Descriptors are allocated lowest first: one numbered fd means
		// fd others are open below it. Within the reserve, this
		// connection would take what the echo listeners need.
		if limit, reserve := l.reserve(); connFd(c) >= limit-reserve {
			c.Close()
			l.refused.Add(1)
			continue
		}
		return &capConn{Conn: c, l: l}, nil
	}
}

// Close closes the listener and wakes an Accept waiting for a slot.
func (l *capListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// connFd returns c's descriptor number, or -1 when it has none.
func connFd(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1
	}
	return fd
}

// capConn gives its slot back when it closes, once.
type capConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.l.slots })
	return err
}
