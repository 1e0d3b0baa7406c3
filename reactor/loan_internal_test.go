//go:build linux

package reactor

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// loanEcho echoes, and keeps its Conns for the test to close.
type loanEcho struct {
	mu    sync.Mutex
	conns []*Conn
}

func (h *loanEcho) OnOpen(c *Conn) {
	// A small send buffer, so that a peer that reads nothing backs the
	// echo up at once (autotuned, the socket would absorb megabytes).
	unix.SetsockoptInt(c.Fd(), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
}
func (h *loanEcho) OnData(c *Conn, b []byte) { c.Write(b) }
func (h *loanEcho) OnEOF(c *Conn)            { c.Close() }
func (h *loanEcho) OnClose(*Conn, error)     {}

// TestLoansComeBackOnce: receive buffers lent to sends (loan.go) go back to
// the kernel exactly once however the send ends: sent in full (the echoed
// bytes are checked, so a buffer given back while its send still read it
// shows as corruption), cut by CloseNow while the peer reads nothing and
// the send waits in the kernel, and cut by the reactor's Close the same
// way. A buffer given back twice panics in ring.BufRing.Put; one never
// given back is still held when the loop has stopped.
func TestLoansComeBackOnce(t *testing.T) {
	for round := range 2 {
		loanRound(t, round)
	}
}

// lendingLoop returns a one-loop io_uring reactor whose loop lends its
// receive buffers and sends every handler call's Writes through the ring
// (skipping where it cannot lend), and that loop.
func lendingLoop(t *testing.T) (*Reactor, *loop) {
	t.Helper()
	r := oneLoopReactor(t, BackendUring)
	l := r.loops[0]
	if l.lend.max == 0 {
		t.Skipf("this loop lends no buffers (receive path %v)", l.rcv)
	}
	l.sendBatch.Store(0)
	return r, l
}

func loanRound(t *testing.T, round int) {
	r, l := lendingLoop(t)
	h := &loanEcho{}
	ln, err := r.Listen("tcp", "127.0.0.1:0", h, ListenConfig{SendInPlace: true})
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	const msg = outChunkSize
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	// Echo clients: every byte comes back as sent.
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			out, in := make([]byte, msg), make([]byte, msg)
			for range 50 {
				rand.Read(out)
				if _, err := c.Write(out); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(c, in); err != nil || !bytes.Equal(in, out) {
					errs <- fmt.Errorf("echo differs from what was sent (%v)", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Clients that send and never read, with a small receive buffer: the
	// echo's sends wait in the kernel, holding their lent buffers.
	stuck := make([]net.Conn, 0, 8)
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
		return serr
	}}
	for range 8 {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		stuck = append(stuck, c)
		c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		for range 64 {
			if _, err := c.Write(make([]byte, msg)); err != nil {
				break // the server paused reading: its output backed up
			}
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Wait (bounded) until the stuck Conns' output backs up, with lent
	// buffers among it; then half of them are closed at once, with their
	// sends in flight, and the rest by the reactor's Close.
	var backed []*Conn
	waitUntil(t, "every stuck Conn's output to back up, with lent buffers among it", func() bool {
		backed = backed[:0]
		h.mu.Lock()
		for _, c := range h.conns {
			if c.Pending() > 0 {
				backed = append(backed, c)
			}
		}
		h.mu.Unlock()
		return len(backed) == len(stuck) && l.lend.out.Load() > 0
	})
	outAtCut := l.lend.out.Load()
	cut := len(backed) / 2
	inFlight := 0
	for _, c := range backed[:cut] {
		// CloseNow's work, done on the loop so that what it leaves can
		// be looked at before the send's end reaches the loop: a buffer
		// lent to a send still in the kernel stays lent.
		onLoop(t, l, func(l *loop) {
			lentSend := c.wr != 0 && c.out.first != nil && c.out.first.loan != nil
			before := l.lend.out.Load()
			c.finish(nil)
			if lentSend {
				inFlight++
				if after := l.lend.out.Load(); after != before {
					t.Errorf("round %d: closing a Conn gave its lent buffer back (%d lent, then %d) while its send was still in the kernel", round, before, after)
				}
			}
		})
	}
	if inFlight == 0 {
		t.Errorf("round %d: no Conn closed with a lent buffer in a send in flight: the test checks nothing there", round)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range stuck {
		c.Close()
	}
	// The loop has stopped: its state is this goroutine's to read.
	if st := r.Stats(); st.SentInPlace != l.lend.taken.Load() || st.InPlaceHeld != 0 {
		t.Errorf("round %d: Stats say %d sent in place, %d held; the loop lent %d, %d out", round, st.SentInPlace, st.InPlaceHeld, l.lend.taken.Load(), l.lend.out.Load())
	}
	if l.lend.taken.Load() == 0 {
		t.Errorf("round %d: no buffer was lent: the test checks nothing", round)
	}
	if n := l.lend.out.Load(); n != 0 {
		t.Errorf("round %d: %d lent buffers never came back", round, n)
	}
	if n := l.rcv.Held(); n != 0 {
		t.Errorf("round %d: %d receive buffers still held after the loop stopped", round, n)
	}
	t.Logf("round %d: %d buffers lent; %d out when %d Conns were cut with output waiting, %d of them with a lent send in flight", round, l.lend.taken.Load(), outAtCut, cut, inFlight)
}

// inPlaceHandler writes in one of three ways and then touches b.
type inPlaceHandler struct {
	mode int // 0: Write(b), then scribble on b; 1: Write(b[:half]), then scribble; 2: Write(b), Write("!"), then compare b
	errs chan error
}

func (h *inPlaceHandler) OnOpen(*Conn)         {}
func (h *inPlaceHandler) OnClose(*Conn, error) {}
func (h *inPlaceHandler) OnData(c *Conn, b []byte) {
	switch h.mode {
	case 0, 1:
		n := len(b)
		if h.mode == 1 {
			n = len(b) / 2
		}
		c.Write(b[:n])
		for i := range b {
			b[i] = 'X' // allowed: Write copied
		}
	case 2:
		keep := append([]byte(nil), b...)
		c.Write(b)
		c.Write([]byte("!"))
		if !bytes.Equal(b, keep) {
			h.errs <- fmt.Errorf("a Write after the one that sent b in place overwrote b")
		}
	}
}

// TestSendInPlaceKeepsWhatWriteCopies: Write copies unless the Listener
// has SendInPlace, and even then it sends in place only the tail of what
// OnData was handed, so that a handler that changes b after a Write that
// copies, or reads b after more Writes, sees what Write's doc promises.
func TestSendInPlaceKeepsWhatWriteCopies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inPlace bool
		mode    int
		lends   bool
	}{
		{"copies by default", false, 0, false},
		{"copies a head", true, 1, false},
		{"sends the tail in place, appends past it", true, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, l := lendingLoop(t)
			h := &inPlaceHandler{mode: tc.mode, errs: make(chan error, 64)}
			_, c := listenDialWith(t, r, h, ListenConfig{SendInPlace: tc.inPlace})
			c.SetDeadline(time.Now().Add(10 * time.Second))
			msg := make([]byte, 2*lendMin) // offered: lendMin or more
			for range 20 {
				// Letters only: a scribbled 'X' that reaches the peer
				// cannot pass for a byte that was sent.
				rand.Read(msg)
				for i := range msg {
					msg[i] = 'a' + msg[i]%26
				}
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				var got []byte
				switch tc.mode {
				case 1:
					// Half of each piece the message arrived in: read
					// until the connection is quiet.
					buf := make([]byte, len(msg))
					for {
						c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
						n, err := c.Read(buf)
						got = append(got, buf[:n]...)
						if err != nil {
							break
						}
					}
					if len(got) == 0 {
						t.Fatal("nothing came back")
					}
				default:
					got = make([]byte, len(msg))
					if _, err := io.ReadFull(c, got); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, msg) {
						t.Fatalf("the echo differs from what was sent: %.16q", got)
					}
				}
				if i := bytes.IndexByte(got, 'X'); i >= 0 {
					t.Fatalf("the peer got bytes the handler changed after Write copied them: %.16q", got[i:])
				}
				if tc.mode == 2 {
					// A "!" follows each piece's echo.
					for {
						c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
						tail := make([]byte, 64)
						n, err := c.Read(tail)
						if len(bytes.Trim(tail[:n], "!")) > 0 {
							t.Fatalf("after the echo: %q", tail[:n])
						}
						if err != nil {
							break
						}
					}
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
			}
			select {
			case err := <-h.errs:
				t.Fatal(err)
			default:
			}
			if lent := l.lend.taken.Load() > 0; lent != tc.lends {
				t.Errorf("buffers lent: %v, want %v", lent, tc.lends)
			}
		})
	}
}

// TestSendInPlaceWithForeignWrites: Writes from another goroutine to a Conn
// whose receives are being offered (under -race: they read the offer
// while the loop publishes the next) take nothing that is not theirs, and
// every byte arrives: the echo in order, the other goroutine's among it.
func TestSendInPlaceWithForeignWrites(t *testing.T) {
	r, l := lendingLoop(t)
	h := &loanEcho{}
	_, c := listenDialWith(t, r, h, ListenConfig{SendInPlace: true})
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var sc *Conn
	waitUntil(t, "the Conn to open", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.conns) > 0 {
			sc = h.conns[0]
		}
		return sc != nil
	})
	const msgs, size, foreign = 100, 2 * lendMin, 2000
	// Round trips until a buffer was lent, so that the offers the other
	// goroutine races are being made (a message the kernel split into
	// pieces below lendMin, or a piece written while the last one's send
	// was pending, lends nothing; a few tries suffice).
	ping, pong := bytes.Repeat([]byte{'p'}, size), make([]byte, size)
	for try := 0; l.lend.taken.Load() == 0; try++ {
		if try == 50 {
			t.Fatal("50 round trips of lendMin×2 bytes lent no buffer")
		}
		if _, err := c.Write(ping); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, pong); err != nil || !bytes.Equal(pong, ping) {
			t.Fatalf("round trip: %v", err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range foreign {
			if _, err := sc.Write([]byte{'z'}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	sent := make([]byte, msgs*size)
	for i := range sent {
		sent[i] = 'a' + byte(i%25) // never 'z'
	}
	go func() {
		for i := range msgs {
			if _, err := c.Write(sent[i*size : (i+1)*size]); err != nil {
				return
			}
		}
	}()
	got := make([]byte, msgs*size+foreign)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	<-done
	echo := bytes.ReplaceAll(got, []byte{'z'}, nil)
	if n := len(got) - len(echo); n != foreign {
		t.Errorf("%d of the other goroutine's %d bytes arrived", n, foreign)
	}
	if !bytes.Equal(echo, sent) {
		t.Errorf("the echo differs from what was sent (%d bytes against %d)", len(echo), len(sent))
	}
}
