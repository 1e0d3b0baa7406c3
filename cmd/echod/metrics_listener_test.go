package main

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// pipeListener hands out one end of net.Pipe()s: connections without a
// descriptor, so that only the cap is under test.
type pipeListener struct {
	conns    chan net.Conn
	accepted atomic.Int32
	closed   chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		l.accepted.Add(1)
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { close(l.closed); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestCapListener: the cap holds; a closed connection frees its slot
// (once, however often it is closed); Close wakes an Accept waiting for a
// slot without taking another connection from below.
func TestCapListener(t *testing.T) {
	const maxConns = 2
	inner := &pipeListener{conns: make(chan net.Conn, 8), closed: make(chan struct{})}
	for range 4 {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		inner.conns <- a
	}
	l := newCapListener(inner, maxConns)
	var open []net.Conn
	for range maxConns {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	// A closed connection gives its slot back, once.
	open[0].Close()
	open[0].Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	open[0] = c
	// Full again: a waiting Accept returns when the listener closes,
	// never having taken a connection from below.
	res := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		res <- err
	}()
	l.Close()
	select {
	case err := <-res:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept waiting for a slot returned %v after Close, want net.ErrClosed", err)
		}
	case <-time.After(waitBound):
		t.Fatal("Close did not wake an Accept waiting for a slot")
	}
	if n := inner.accepted.Load(); n != maxConns+1 {
		t.Errorf("%d connections taken from below, want %d: the cap of %d did not hold", n, maxConns+1, maxConns)
	}
	for _, c := range open {
		c.Close()
	}
}

// TestCapListenerReserve: a connection whose descriptor falls within the
// reserve below the limit is closed at once and counted; the next one,
// once descriptors are back, is served.
func TestCapListenerReserve(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newCapListener(tl, 4)
	defer l.Close()
	calls := 0
	l.reserve = func() (int, int) {
		calls++
		if calls == 1 {
			return 1 << 20, 1 << 20 // every descriptor is in the reserve
		}
		return 1 << 30, 0
	}
	first, err := net.DialTimeout("tcp", tl.Addr().String(), waitBound)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := net.DialTimeout("tcp", tl.Addr().String(), waitBound)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := l.refused.Load(); got != 1 {
		t.Errorf("refused = %d, want 1", got)
	}
	first.SetReadDeadline(time.Now().Add(waitBound))
	if _, err := first.Read(make([]byte, 1)); err == nil {
		t.Error("the connection within the reserve was not closed")
	}
	if c.RemoteAddr().String() != second.LocalAddr().String() {
		t.Errorf("accepted %v, want the second client %v", c.RemoteAddr(), second.LocalAddr())
	}
}
