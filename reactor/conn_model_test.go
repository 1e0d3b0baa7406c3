package reactor_test

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"pgregory.net/rapid"

	"github.com/oneshot-io/oneshot/reactor"
)

// modelConn is the server side the model test watches: every Write that
// the Conn accepted, in the order it accepted them, and its callbacks.
type modelConn struct {
	mu      sync.Mutex
	c       *reactor.Conn
	sent    []byte // output the Conn took (Write's n), in order
	opens   int
	closes  int
	lateOps int // OnData after OnClose
	err     error
	closed  chan struct{}
}

func (m *modelConn) write(b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Write's n counts what it took even when it then fails (a reset
	// met halfway through a direct write): those bytes may reach the peer.
	n, _ := m.c.Write(b)
	m.sent = append(m.sent, b[:n]...)
}

// modelHandler echoes, and hands each new Conn's record to the test.
type modelHandler struct{ conns chan<- *modelConn }

func (h *modelHandler) OnOpen(c *reactor.Conn) {
	// A small send buffer, so that output backs up past MaxPending and
	// backpressure pauses reading within a few sends.
	unix.SetsockoptInt(c.Fd(), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	m := &modelConn{c: c, opens: 1, closed: make(chan struct{})}
	c.SetContext(m)
	h.conns <- m
}

func (h *modelHandler) OnData(c *reactor.Conn, b []byte) {
	m := c.Context().(*modelConn)
	m.mu.Lock()
	late := m.closes > 0
	if late {
		m.lateOps++
	}
	m.mu.Unlock()
	if !late {
		m.write(b)
	}
}

// modelEOFHandler is modelHandler as an EOFHandler: at the peer's EOF it
// writes a last word and closes, like a line server answering a last line.
type modelEOFHandler struct{ modelHandler }

func (h *modelEOFHandler) OnEOF(c *reactor.Conn) {
	c.Context().(*modelConn).write([]byte("bye"))
	c.Close()
}

func (h *modelHandler) OnClose(c *reactor.Conn, err error) {
	m := c.Context().(*modelConn)
	m.mu.Lock()
	m.closes++
	m.err = err
	if m.closes == 1 {
		close(m.closed)
	}
	m.mu.Unlock()
}

// TestConnModel explores a Conn's life the way cancel's model tests explore
// a request's: random sequences of what its peer does (send, read, shut its
// write side, reset) and of what other goroutines do to it (Write, Close,
// CloseNow, CloseWrite), on a real socket, with a MaxPending small enough
// that backpressure pauses reading. Every move the layer makes goes through
// setPhase, which panics on a move outside the table, and after each
// sequence the test checks what the table promises: OnOpen and OnClose
// exactly once, no OnData after OnClose, the peer read a prefix of what the
// Conn accepted, all of it unless CloseNow or a reset cut it short, and a
// clean OnClose unless one did.
func TestConnModel(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			conns := make(chan *modelConn, 1)
			cfg := reactor.ListenConfig{MaxPending: 8 << 10, LingerTimeout: time.Second}
			plain := listen(t, r, &modelHandler{conns}, cfg)
			eof := listen(t, r, &modelEOFHandler{modelHandler{conns}}, cfg)
			ports := []int{plain.Addr().(*net.TCPAddr).Port, eof.Addr().(*net.TCPAddr).Port}
			rapid.Check(t, func(rt *rapid.T) {
				connModelCheck(rt, conns, rapid.SampledFrom(ports).Draw(rt, "listener"))
			})
		})
	}
}

func connModelCheck(rt *rapid.T, conns chan *modelConn, port int) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		rt.Fatal(err)
	}
	defer unix.Close(fd)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) // so the Conn's output backs up
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		rt.Fatal(err)
	}
	unix.SetNonblock(fd, true)
	var m *modelConn
	select {
	case m = <-conns:
	case <-time.After(5 * time.Second):
		rt.Fatal("the Conn never opened")
	}
	var got []byte
	buf := make([]byte, 64<<10)
	// recv reads what is there; it reports whether the peer saw the end
	// of the Conn's output (EOF or a reset).
	recv := func() bool {
		for {
			n, err := unix.Read(fd, buf)
			switch {
			case err == unix.EAGAIN || err == unix.EINTR:
				return false
			case err != nil || n == 0:
				return true
			}
			got = append(got, buf[:n]...)
		}
	}
	cut, shutWr, reset := false, false, false // cut: CloseNow asked
	rt.Repeat(map[string]func(*rapid.T){
		"send": func(rt *rapid.T) {
			if shutWr || reset {
				rt.Skip("the peer's write side is shut")
			}
			n := rapid.IntRange(1, 32<<10).Draw(rt, "n")
			unix.Write(fd, bytes.Repeat([]byte{'p'}, n)) // what the socket takes
		},
		"recv": func(*rapid.T) { _ = recv() },
		"serverWrite": func(rt *rapid.T) {
			m.write(bytes.Repeat([]byte{'w'}, rapid.IntRange(1, 16<<10).Draw(rt, "n")))
		},
		"peerShutWrite": func(*rapid.T) {
			shutWr = true
			unix.Shutdown(fd, unix.SHUT_WR)
		},
		"Close":      func(*rapid.T) { m.c.Close() },
		"CloseWrite": func(*rapid.T) { m.c.CloseWrite() },
		"CloseNow": func(*rapid.T) {
			cut = true
			m.c.CloseNow()
		},
		"peerReset": func(rt *rapid.T) {
			if rapid.IntRange(0, 3).Draw(rt, "rare") != 0 {
				rt.Skip("resets end the sequence: keep them rare")
			}
			reset = true
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			unix.Shutdown(fd, unix.SHUT_RDWR)
		},
	})
	// The peer ends its side and reads until the Conn has closed and its
	// EOF (or reset) arrived.
	if !reset {
		unix.Shutdown(fd, unix.SHUT_WR)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !recv() {
		if time.Now().After(deadline) {
			rt.Fatalf("the peer never saw the Conn's end; got %d bytes", len(got))
		}
		unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 10)
	}
	select {
	case <-m.closed:
	case <-time.After(10 * time.Second):
		rt.Fatal("the Conn never called OnClose")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.opens != 1 || m.closes != 1 {
		rt.Fatalf("OnOpen %d times, OnClose %d times", m.opens, m.closes)
	}
	if m.lateOps != 0 {
		rt.Fatalf("OnData ran %d times after OnClose", m.lateOps)
	}
	if !bytes.HasPrefix(m.sent, got) {
		rt.Fatalf("the peer read %d bytes that are not a prefix of the %d the Conn accepted", len(got), len(m.sent))
	}
	if !cut && !reset {
		if len(got) != len(m.sent) {
			rt.Fatalf("the peer read %d of the %d bytes the Conn accepted, with no CloseNow or reset", len(got), len(m.sent))
		}
		if m.err != nil {
			rt.Fatalf("OnClose(%v) after a clean end", m.err)
		}
	}
}
