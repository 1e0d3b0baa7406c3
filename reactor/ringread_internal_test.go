//go:build linux

package reactor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// oneLoopReactor opens a reactor of one loop on backend b; the io_uring
// row skips, with the reason, where io_uring is unavailable. The caller
// closes it.
func oneLoopReactor(t testing.TB, b Backend) *Reactor {
	t.Helper()
	return reactorWith(t, Config{Backend: b, Loops: 1})
}

// reactorWith is oneLoopReactor for any Config.
func reactorWith(t testing.TB, cfg Config) *Reactor {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			t.Skipf("io_uring unavailable here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() }) // a test that fails early leaves no loop running
	return r
}

// listenDial serves a TCP listener on loopback with h and dials it once;
// the dialed end closes when the test ends.
func listenDial(t *testing.T, r *Reactor, h Handler) (*Listener, net.Conn) {
	t.Helper()
	return listenDialWith(t, r, h, ListenConfig{})
}

// listenDialWith is listenDial with the Listener configured by cfg.
func listenDialWith(t *testing.T, r *Reactor, h Handler, cfg ListenConfig) (*Listener, net.Conn) {
	t.Helper()
	ln, err := r.Listen("tcp", "127.0.0.1:0", h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return ln, peer
}

// gate is a loop task that holds the loop until released: what lets a
// test order the loop's work against the kernel's.
type gate struct{ entered, release chan struct{} }

func newGate() gate { return gate{make(chan struct{}), make(chan struct{})} }

func (g gate) runTask(*loop, int32) {
	close(g.entered)
	<-g.release
}

// TestReadDeadlineAfterKernelTookBytes orders one collision on purpose: a
// parked Read's deadline passes (its cancel is queued for the loop), then
// bytes arrive, which the kernel hands to the waiting receive (io_uring:
// the receive's wake has fired when the loop gets to the cancel), then the
// loop runs the cancel. The Read must return the bytes, or time out with
// the bytes still in the socket; either way nothing is lost. A cancel that
// delivered the receive at once, before its end (a withdrawal), left the
// bytes for a reader that had gone: the loop then copied them into a
// recycled waiter (a panic, or a data race under -race) or dropped them.
// On epoll the same order runs through a readiness Poll.
//
// The reset row orders a peer's reset the same way: a receive the kernel
// ends with ECONNRESET takes the socket's error with it, so the Read
// reports it, or times out and the next Read does; never end of file.
func TestReadDeadlineAfterKernelTookBytes(t *testing.T) {
	for _, b := range []Backend{BackendEpoll, BackendUring} {
		for _, reset := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reset=%v", b, reset), func(t *testing.T) {
				for round := range 20 {
					testReadDeadlineAfterKernelTookBytes(t, b, reset, round)
				}
			})
		}
	}
}

func testReadDeadlineAfterKernelTookBytes(t *testing.T, b Backend, reset bool, round int) {
	r := oneLoopReactor(t, b)
	defer r.Close()
	l := r.loops[0]
	pair := netPairOn
	if reset {
		pair = stdPairOn // a peer off the reactor, whose close the gated loop cannot hold
	}
	c, peer := pair(t, r)
	defer peer.Close()
	defer c.Close()

	type read struct {
		p   []byte
		err error
	}
	got := make(chan read, 1)
	go func() {
		p := make([]byte, 64)
		n, err := c.Read(p)
		got <- read{p[:n], err}
	}()
	// Parked and armed: the loop has taken the request from its inbox,
	// so the deadline's cancel below is a command of its own.
	waitUntil(t, "the Read parked", func() bool { return l.outstanding.Load() == 1 && l.backendArmed.Load() == 1 })

	g1, g2, g3 := newGate(), newGate(), newGate()
	l.postTask(g1, 0)
	<-g1.entered
	l.postTask(g2, 0)
	c.SetReadDeadline(time.Now().Add(-time.Second)) // the Read's cancel, behind g2
	waitUntil(t, "the cancel queued", func() bool { return l.in.n.Load() == 2 })
	l.postTask(g3, 0)
	close(g1.release)
	<-g2.entered // the loop looked at the kernel after g1: nothing yet
	if reset {
		peer.(*net.TCPConn).SetLinger(0)
		peer.Close() // a reset, sent at once
	} else if _, err := peer.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	close(g2.release) // the cancel runs next, before the loop looks again
	<-g3.entered
	// The loop has run the cancel and not looked at the kernel since. A
	// receive is delivered only at its end in the kernel, which the loop
	// has not seen: it is still outstanding. (A poll is withdrawn and
	// delivered at once: it holds no bytes.)
	if ring := r.loopFor(c.(*NetConn).fd.sysfd).rcv != nil; ring && l.outstanding.Load() != 1 {
		t.Errorf("round %d: the canceled receive was delivered before the kernel ended it", round)
	}
	close(g3.release)

	res := <-got
	if reset {
		if errors.Is(res.err, os.ErrDeadlineExceeded) {
			c.SetReadDeadline(time.Time{})
			_, res.err = c.Read(make([]byte, 64))
		}
		if !errors.Is(res.err, unix.ECONNRESET) {
			t.Fatalf("round %d: after the peer's reset, Read = %v; want ECONNRESET", round, res.err)
		}
		return
	}
	switch {
	case res.err == nil && string(res.p) == "0123456789":
	case errors.Is(res.err, os.ErrDeadlineExceeded) && len(res.p) == 0:
		c.SetReadDeadline(time.Time{})
		p := make([]byte, 10)
		if _, err := io.ReadFull(c, p); err != nil || string(p) != "0123456789" {
			t.Fatalf("round %d: after the timeout, the socket had %q (%v)", round, p, err)
		}
	default:
		t.Fatalf("round %d: Read = %q, %v; want the 10 bytes, or a timeout with them left in the socket", round, res.p, res.err)
	}
}

// TestReactorCloseWithReadParked: Close comes while a Read is parked and
// bytes have just arrived (the loop held until then). Close completes
// the Read once, after the kernel ended its receive: with the bytes, or
// with ErrClosed. A receive delivered before its end left the bytes to be
// copied afterwards into a waiter the reader had given back (a panic on
// the loop, or under -race a data race).
func TestReactorCloseWithReadParked(t *testing.T) {
	for _, b := range []Backend{BackendEpoll, BackendUring} {
		t.Run(string(b), func(t *testing.T) {
			for round := range 30 {
				testReactorCloseWithReadParked(t, b, round)
			}
		})
	}
}

func testReactorCloseWithReadParked(t *testing.T, b Backend, round int) {
	r := oneLoopReactor(t, b)
	closed := make(chan error, 1)
	defer func() {
		if closed != nil {
			r.Close()
		}
	}()
	l := r.loops[0]
	c, peer := netPairOn(t, r)
	defer peer.Close()
	defer c.Close()
	got := make(chan error, 1)
	go func() {
		p := make([]byte, 64)
		n, err := c.Read(p)
		if err == nil && string(p[:n]) != "0123456789" {
			err = errors.New("read " + string(p[:n]))
		}
		got <- err
	}()
	waitUntil(t, "the Read parked", func() bool { return l.outstanding.Load() == 1 && l.backendArmed.Load() == 1 })
	g := newGate()
	l.postTask(g, 0)
	<-g.entered
	if _, err := peer.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	go func() { closed <- r.Close() }()
	waitUntil(t, "Close began", func() bool { return r.closing.Load() })
	close(g.release)
	if err := <-got; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("round %d: Read = %v; want the 10 bytes or ErrClosed", round, err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("round %d: Close: %v", round, err)
	}
	closed = nil
}

// pairOn accepts on a NetListen of r a TCP connection dialed by dial and
// returns both ends.
func pairOn(t *testing.T, r *Reactor, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (server, client net.Conn) {
	t.Helper()
	ln, err := r.NetListen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if client, err = dial(ctx, "tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if server = <-accepted; server == nil {
		t.Fatal("Accept failed")
	}
	return server, client
}

// netPairOn: both ends on r.
func netPairOn(t *testing.T, r *Reactor) (server, client net.Conn) {
	return pairOn(t, r, r.DialContext)
}

// stdPairOn: the client end dialed by net, on Go's netpoller, not on r.
func stdPairOn(t *testing.T, r *Reactor) (server, client net.Conn) {
	return pairOn(t, r, new(net.Dialer).DialContext)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}
