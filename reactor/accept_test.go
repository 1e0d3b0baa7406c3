//go:build linux

package reactor_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/reactor"
)

// peerLog records each opened Conn's peer address, and counts closes.
type peerLog struct {
	mu     sync.Mutex
	peers  map[string]int
	closes atomic.Int64
}

func (h *peerLog) OnOpen(c *reactor.Conn) {
	h.mu.Lock()
	h.peers[c.RemoteAddr().String()]++
	h.mu.Unlock()
}
func (h *peerLog) OnData(c *reactor.Conn, b []byte) { c.Write(b) }
func (h *peerLog) OnClose(*reactor.Conn, error)     { h.closes.Add(1) }
func (h *peerLog) opened() int                      { h.mu.Lock(); defer h.mu.Unlock(); return len(h.peers) }
func throughRing(r *reactor.Reactor) bool           { return strings.HasPrefix(r.IOPath(), "ring") }
func dialN(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	cs := make([]net.Conn, n)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs[i] = c
	}
	return cs
}

// TestAcceptHandsOverEachConnectionOnce: every connection dialed is opened
// once, as a Conn whose RemoteAddr is its client's own address, on every
// backend and loop it is handed to. Through the ring one armed accept
// serves them all: no accept4, no poll per connection.
func TestAcceptHandsOverEachConnectionOnce(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			h := &peerLog{peers: map[string]int{}}
			ln := listen(t, r, h, reactor.ListenConfig{})
			const n = 40
			cs := dialN(t, ln.Addr().String(), n)
			waitFor(t, 5*time.Second, "every connection opened", func() bool { return h.opened() == n })
			h.mu.Lock()
			for _, c := range cs {
				if got := h.peers[c.LocalAddr().String()]; got != 1 {
					t.Errorf("client %v opened %d times", c.LocalAddr(), got)
				}
			}
			if len(h.peers) != n {
				t.Errorf("%d distinct peers opened, want %d: %v", len(h.peers), n, h.peers)
			}
			h.mu.Unlock()
			calls := ln.Stats().AcceptCalls
			switch {
			case throughRing(r) && calls != 1:
				t.Errorf("AcceptCalls = %d through the ring: want the one multishot accept", calls)
			case !throughRing(r) && calls < n:
				t.Errorf("AcceptCalls = %d after polls, fewer than the %d connections", calls, n)
			}
			for _, c := range cs {
				c.Close()
			}
			waitFor(t, 5*time.Second, "every Conn closed", func() bool { return h.closes.Load() == n })
		})
	}
}

// gateEcho echoes, except that the first Conn's first OnData holds the
// loop until the test opens the gate: a window in which the kernel
// accepts (through the ring) with nobody reading the completions.
type gateEcho struct {
	peerLog
	first   atomic.Pointer[reactor.Conn]
	blocked chan struct{}
	gate    chan struct{}
}

func (h *gateEcho) OnOpen(c *reactor.Conn) {
	h.first.CompareAndSwap(nil, c)
	h.peerLog.OnOpen(c)
}

func (h *gateEcho) OnData(c *reactor.Conn, b []byte) {
	if c == h.first.Load() && h.gate != nil {
		close(h.blocked)
		<-h.gate
		h.gate = nil
	}
	c.Write(b)
}

// TestShutdownServesEveryEstablishedConnection: clients that connected
// and wrote a byte before Shutdown each get it echoed, however far the
// server had got with them: opened, accepted by the kernel with its
// completion not yet read (through the ring: Shutdown stops that accept
// and takes what it accepted before it drains the backlog), or still in
// the backlog. 10 rounds of 16 clients dialed while the loop is held in a
// handler, Shutdown asked, then the loop let go. With two loops, Conns
// are also on their way from the accepting loop to the other one when
// Shutdown sweeps the loops for its Conns (Listener.sweep).
func TestShutdownServesEveryEstablishedConnection(t *testing.T) {
	for _, b := range connBackends {
		for _, loops := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/loops=%d", name(b), loops), func(t *testing.T) {
				testShutdownServesEvery(t, b, loops)
			})
		}
	}
}

func testShutdownServesEvery(t *testing.T, b backend, loops int) {
	for round := 0; round < 10; round++ {
		r := newReactor(t, b, loops)
		h := &gateEcho{peerLog: peerLog{peers: map[string]int{}}, blocked: make(chan struct{}), gate: make(chan struct{})}
		ln, err := r.Listen("tcp", "127.0.0.1:0", h, reactor.ListenConfig{})
		if err != nil {
			t.Fatal(err)
		}
		holder := dialN(t, ln.Addr().String(), 1)[0]
		waitFor(t, 5*time.Second, "the holder opened", func() bool { return h.first.Load() != nil })
		holder.Write([]byte{'h'})
		<-h.blocked
		cs := dialN(t, ln.Addr().String(), 16)
		for _, c := range cs {
			if _, err := c.Write([]byte{'x'}); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done <- ln.Shutdown(ctx)
		}()
		waitFor(t, 5*time.Second, "Shutdown to be asked", func() bool { return reactor.ShutdownAsked(ln) })
		close(h.gate)
		if err := <-done; err != nil {
			t.Fatalf("round %d: Shutdown: %v", round, err)
		}
		for i, c := range append(cs, holder) {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 2)
			n, err := c.Read(buf)
			if n != 1 || (buf[0] != 'x' && buf[0] != 'h') {
				t.Fatalf("round %d: client %d of 17 read %q, %v: its connection was dropped, not served", round, i, buf[:n], err)
			}
		}
		if s := ln.Stats(); s.Accepted != 17 || s.Refused != 0 {
			t.Fatalf("round %d: %+v: want 17 accepted, none refused", round, s)
		}
		r.Close()
	}
}

// TestListenerCloseRacingDialsLeaksNoFd: connections that arrive while a
// Listener closes, or while its reactor closes, are opened and closed, or
// refused and closed, or reset in the backlog: none is left open in the
// process (through the ring, one accepted after its accept was canceled
// is closed on arrival), and every opened Conn is closed exactly once.
func TestListenerCloseRacingDialsLeaksNoFd(t *testing.T) {
	for _, b := range connBackends {
		for _, how := range []string{"Listener.Close", "Reactor.Close"} {
			t.Run(name(b)+"/"+how, func(t *testing.T) {
				before := openFds(t)
				for round := 0; round < 10; round++ {
					r := newReactor(t, b, 1)
					h := &peerLog{peers: map[string]int{}}
					ln, err := r.Listen("tcp", "127.0.0.1:0", h, reactor.ListenConfig{})
					if err != nil {
						t.Fatal(err)
					}
					addr := ln.Addr().String()
					stop := make(chan struct{})
					var clients []net.Conn
					var cmu sync.Mutex
					var wg sync.WaitGroup
					for range 2 {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for {
								select {
								case <-stop:
									return
								default:
								}
								c, err := net.DialTimeout("tcp", addr, time.Second)
								if err != nil {
									continue // refused once the socket closed
								}
								cmu.Lock()
								clients = append(clients, c)
								cmu.Unlock()
							}
						}()
					}
					waitFor(t, 5*time.Second, "some connections opened", func() bool { return h.opened() >= 8 })
					if how == "Listener.Close" {
						ln.Close()
					} else {
						r.Close()
					}
					close(stop)
					wg.Wait()
					for _, c := range clients {
						c.Close()
					}
					r.Close()
					opened := int64(h.opened())
					if got := h.closes.Load(); got != opened {
						t.Fatalf("round %d: %d Conns opened, %d closed", round, opened, got)
					}
				}
				waitFor(t, 5*time.Second, "the process's fds back to where they were", func() bool { return openFds(t) <= before })
			})
		}
	}
}
