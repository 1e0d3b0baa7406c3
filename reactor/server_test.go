package reactor_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// udpEcho answers every datagram to its sender.
type udpEcho struct{}

func (udpEcho) OnPacket(p *reactor.PacketConn, b []byte, from netip.AddrPort) { p.WriteTo(b, from) }

func TestPacketEcho(t *testing.T) {
	for _, b := range connBackends {
		for _, nw := range []struct{ network, addr string }{{"udp", "127.0.0.1:0"}, {"udp6", "[::1]:0"}, {"udp", ":0"}} {
			t.Run(name(b)+"/"+nw.network+nw.addr, func(t *testing.T) {
				r := newReactor(t, b, 2)
				pc, err := r.ListenPacket(nw.network, nw.addr, udpEcho{})
				if err != nil {
					t.Skipf("listen %s %s: %v", nw.network, nw.addr, err)
				}
				defer pc.Close()
				port := pc.Addr().(*net.UDPAddr).Port
				dst := "127.0.0.1"
				if nw.network == "udp6" {
					dst = "::1"
				}
				c, err := net.Dial("udp", net.JoinHostPort(dst, itoa(port)))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				for i := 0; i < 20; i++ {
					msg := []byte("datagram " + itoa(i))
					c.Write(msg)
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					buf := make([]byte, 64)
					n, err := c.Read(buf)
					if err != nil || !bytes.Equal(buf[:n], msg) {
						t.Fatalf("echo %d: %q, %v", i, buf[:n], err)
					}
				}
				if err := pc.Close(); err != nil {
					t.Fatal(err)
				}
				if _, err := pc.WriteTo([]byte("x"), netip.MustParseAddrPort("127.0.0.1:9")); !errors.Is(err, reactor.ErrClosed) {
					t.Fatalf("WriteTo after Close = %v, want ErrClosed", err)
				}
			})
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// closeErrs records OnClose errors.
type closeErrs struct {
	echo
	errs  chan error
	opens atomic.Int64
}

func (h *closeErrs) OnOpen(*reactor.Conn)               { h.opens.Add(1) }
func (h *closeErrs) OnClose(_ *reactor.Conn, err error) { h.errs <- err }

// TestIdleTimeout: messages closer together than IdleTimeout keep a Conn
// open past it; then silence closes it, no earlier than IdleTimeout after
// the last message, with ErrIdleTimeout. A round whose gap the machine
// stretched past the timeout (a stalled test goroutine) proves nothing, so
// it skips instead of failing.
func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			h := &closeErrs{errs: make(chan error, 2)}
			ln := listen(t, r, h, reactor.ListenConfig{IdleTimeout: idle})
			prev := time.Now() // no later than the server's first activity
			c := dial(t, ln)
			// Activity keeps it open past the timeout (7 gaps of idle/5)...
			for i := 0; i < 7; i++ {
				time.Sleep(idle / 5)
				sent := time.Now()
				c.Write([]byte("k"))
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err != nil {
					if gap := sent.Sub(prev); gap >= idle*4/5 {
						t.Skipf("message %d came %v after the last, near the %v timeout: a stalled machine, not a verdict", i, gap, idle)
					}
					t.Fatalf("closed while active (message %d, %v after the last): %v", i, sent.Sub(prev), err)
				}
				prev = sent
			}
			// ...then silence closes it.
			if err := <-h.errs; !errors.Is(err, reactor.ErrIdleTimeout) {
				t.Fatalf("OnClose err = %v, want ErrIdleTimeout", err)
			}
			if d := time.Since(prev); d < idle {
				t.Fatalf("closed %v after the last message, before the %v idle timeout", d, idle)
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("client read after idle close = %v, want EOF", err)
			}
		})
	}
}

func TestMaxConnsRefuses(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			r := startReactor(t, b, reactor.Config{Backend: b.kind, Loops: 2, IO: b.io, RecvIncremental: b.inc, Logger: zap.New(core)})
			h := &connLog{}
			ln := listen(t, r, h, reactor.ListenConfig{MaxConns: 3})
			var keep []net.Conn
			for i := 0; i < 3; i++ {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				keep = append(keep, c)
			}
			waitFor(t, 5*time.Second, "3 open", func() bool { return h.opens.Load() == 3 })
			extra, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			extra.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := extra.Read(make([]byte, 1)); err == nil {
				t.Fatal("a connection beyond MaxConns was served")
			}
			extra.Close()
			if s := ln.Stats(); s.Refused != 1 || s.Active != 3 || h.opens.Load() != 3 {
				t.Fatalf("stats %+v, opens %d", s, h.opens.Load())
			}
			// The peer saw only a close: the log says why. The loop logs
			// after the close, so the line may come after the peer's EOF.
			waitFor(t, 5*time.Second, "the refusal logged", func() bool { return logs.FilterMessageSnippet("MaxConns").Len() > 0 })
			if w := logs.FilterMessageSnippet("MaxConns").All(); len(w) != 1 || w[0].Level != zap.WarnLevel || w[0].ContextMap()["max_conns"] != int64(3) {
				t.Fatalf("log of the refusal: %v, want one warning naming max_conns 3", w)
			}
			keep[0].Close()
			waitFor(t, 5*time.Second, "a slot freed", func() bool { return ln.Stats().Active == 2 })
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			keep = append(keep, c)
			waitFor(t, 5*time.Second, "the next one served", func() bool { return h.opens.Load() == 4 })
			for _, c := range keep {
				c.Close()
			}
		})
	}
}

// halfCloser closes its write side after the first read and keeps reading.
type halfCloser struct {
	connLog
	got chan string
}

func (h *halfCloser) OnData(c *reactor.Conn, b []byte) {
	c.Write([]byte("bye"))
	if err := c.CloseWrite(); err != nil {
		h.fail("CloseWrite: %v", err)
	}
	if _, err := c.Write([]byte("more")); !errors.Is(err, reactor.ErrClosed) {
		h.fail("Write after CloseWrite = %v, want ErrClosed", err)
	}
	h.got <- string(b)
}

func TestCloseWrite(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			h := &halfCloser{got: make(chan string, 4)}
			ln := listen(t, r, h, reactor.ListenConfig{})
			c := dial(t, ln)
			c.Write([]byte("hi"))
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			got, err := io.ReadAll(c) // "bye", then EOF from SHUT_WR
			if err != nil || string(got) != "bye" {
				t.Fatalf("read %q, %v; want \"bye\" then EOF", got, err)
			}
			<-h.got
			c.Write([]byte("still reading"))
			if s := <-h.got; s != "still reading" {
				t.Fatalf("server read %q after its CloseWrite", s)
			}
			h.check(t)
		})
	}
}

// TestReadWriteTimeouts: ReadTimeout closes a Conn that sends nothing;
// WriteTimeout closes one whose peer stopped reading (its output stalled);
// both say so with an error wrapping os.ErrDeadlineExceeded.
func TestReadWriteTimeouts(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			h := &closeErrs{errs: make(chan error, 2)}
			ln := listen(t, r, h, reactor.ListenConfig{ReadTimeout: 60 * time.Millisecond})
			start := time.Now() // before the server can have accepted
			dial(t, ln)         // sends nothing
			if err := <-h.errs; !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read timeout: OnClose err = %v", err)
			}
			if d := time.Since(start); d < 60*time.Millisecond {
				t.Fatalf("closed after %v, before the read timeout", d)
			}

			h2 := &closeErrs{errs: make(chan error, 2)}
			ln2 := listen(t, r, h2, reactor.ListenConfig{WriteTimeout: 80 * time.Millisecond, MaxPending: 64 << 10})
			c2 := dial(t, ln2)
			// The peer's receive buffer keeps its default size: see
			// TestShutdownContextEndsForceCloses.
			go func() { // never reads: the echo backs up
				buf := make([]byte, 64<<10)
				c2.SetWriteDeadline(time.Now().Add(5 * time.Second))
				for {
					if _, err := c2.Write(buf); err != nil {
						return
					}
				}
			}()
			select {
			case err := <-h2.errs:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("write timeout: OnClose err = %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a peer that stopped reading was never closed")
			}
		})
	}
}

// pusher hands each opened Conn to the test, which writes from its own
// goroutine.
type pusher struct {
	opened chan *reactor.Conn
	closed chan error
}

func (p *pusher) OnOpen(c *reactor.Conn)             { p.opened <- c }
func (p *pusher) OnData(*reactor.Conn, []byte)       {}
func (p *pusher) OnClose(_ *reactor.Conn, err error) { p.closed <- err }

// TestWriteFromAnotherGoroutineThenClose: Writes from a goroutine that is
// not the loop queue what the socket refuses and hand the flush to the
// loop; Close then flushes all of it, in order, before closing cleanly.
func TestWriteFromAnotherGoroutineThenClose(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			h := &pusher{opened: make(chan *reactor.Conn, 1), closed: make(chan error, 1)}
			ln := listen(t, r, h, reactor.ListenConfig{})
			c := dial(t, ln)
			sc := <-h.opened
			const total = 4 << 20
			want := make([]byte, total)
			rand.Read(want)
			go func() {
				for off := 0; off < total; off += 8 << 10 {
					if _, err := sc.Write(want[off : off+8<<10]); err != nil {
						t.Errorf("Write: %v", err)
						return
					}
				}
				sc.Close() // flush, then close
				if _, err := sc.Write([]byte("x")); !errors.Is(err, reactor.ErrClosed) {
					t.Errorf("Write after Close = %v, want ErrClosed", err)
				}
			}()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %d of %d bytes (equal %v): %v", len(got), total, bytes.Equal(got, want), err)
			}
			if err := <-h.closed; err != nil {
				t.Fatalf("OnClose err = %v, want nil after a flushed Close", err)
			}
		})
	}
}

// closer answers its first read with "ok", then makes the close calls its
// name lists, in order, inside the same OnData.
type closer struct {
	calls  []string
	closed chan error
}

func (h *closer) OnOpen(*reactor.Conn) {}
func (h *closer) OnData(c *reactor.Conn, b []byte) {
	c.Write([]byte("ok"))
	for _, call := range h.calls {
		switch call {
		case "Close":
			c.Close()
		case "CloseNow":
			c.CloseNow()
		case "CloseWrite":
			c.CloseWrite()
		}
	}
}
func (h *closer) OnClose(_ *reactor.Conn, err error) { h.closed <- err }

// TestCloseCallsInOneHandlerCall: close requests made together during a
// handler call are acted on after it returns, the strongest winning
// (CloseNow over Close over CloseWrite) whatever their order.
func TestCloseCallsInOneHandlerCall(t *testing.T) {
	cases := []struct {
		calls  []string
		closes bool // the Conn must close (else only its write side shuts)
		wantOK bool // "ok" reaches the peer (not discarded by CloseNow)
	}{
		{[]string{"CloseNow", "CloseWrite"}, true, false},
		{[]string{"CloseWrite", "CloseNow"}, true, false},
		{[]string{"Close", "CloseWrite"}, true, true},
		{[]string{"CloseWrite", "Close"}, true, true},
		{[]string{"CloseWrite"}, false, true},
	}
	for _, b := range connBackends {
		for _, tc := range cases {
			t.Run(name(b)+"/"+strings.Join(tc.calls, "+"), func(t *testing.T) {
				r := newReactor(t, b, 1)
				h := &closer{calls: tc.calls, closed: make(chan error, 1)}
				ln := listen(t, r, h, reactor.ListenConfig{})
				c := dial(t, ln)
				c.Write([]byte("x"))
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				got, _ := io.ReadAll(c) // EOF (or a reset) once the server shut its side
				if tc.wantOK && string(got) != "ok" {
					t.Fatalf("peer read %q, want \"ok\" then EOF", got)
				}
				wait := 2 * time.Second
				if !tc.closes {
					wait = 50 * time.Millisecond // a window in which a wrong close would show
				}
				select {
				case err := <-h.closed:
					if !tc.closes {
						t.Fatalf("CloseWrite alone closed the Conn (%v)", err)
					}
				case <-time.After(wait):
					if tc.closes {
						t.Fatal("the Conn never closed: a close request was lost")
					}
				}
			})
		}
	}
}

// unacked returns the bytes c's kernel still holds unacknowledged by the
// peer (SIOCOUTQ): 0 means the peer's kernel received all c sent, even
// where loopback delivery was deferred past the write (ksoftirqd on a
// loaded machine).
func unacked(t testing.TB, c net.Conn) int {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Error(err)
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	})
	if err != nil {
		t.Errorf("SIOCOUTQ: %v", err)
		return 0
	}
	return n
}
