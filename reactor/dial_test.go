package reactor_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// TestDialContextResolves: a host name goes through net's resolver (on
// "tcp" its addresses are tried in turn: where localhost gives ::1 first,
// nothing listens there), the conn's addresses are the connected ones, and
// CloseWrite half-closes.
func TestDialContextResolves(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			ln := netListen(t, r, "tcp4")
			port := ln.Addr().(*net.TCPAddr).Port
			accepted := make(chan net.Conn, 1)
			go func() {
				c, _ := ln.Accept()
				accepted <- c
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := r.DialContext(ctx, "tcp", net.JoinHostPort("localhost", itoa(port)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := <-accepted
			if s == nil {
				t.Fatal("Accept failed")
			}
			defer s.Close()
			if c.RemoteAddr().String() != ln.Addr().String() || s.RemoteAddr().String() != c.LocalAddr().String() {
				t.Fatalf("addresses: client %v -> %v, server sees %v, listener %v",
					c.LocalAddr(), c.RemoteAddr(), s.RemoteAddr(), ln.Addr())
			}
			go c.Write([]byte("ping"))
			buf := make([]byte, 4)
			s.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("read %q, %v", buf, err)
			}
			// CloseWrite: the peer reads EOF, and can still answer.
			if err := c.(*reactor.NetConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if n, err := s.Read(buf); err != io.EOF {
				t.Fatalf("after CloseWrite the peer read %d, %v; want EOF", n, err)
			}
			go s.Write([]byte("pong"))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
				t.Fatalf("after CloseWrite read %q, %v", buf, err)
			}
		})
	}
}

// TestDialContextRefused: a closed port fails with ECONNREFUSED in the
// error chain, and leaves no fd behind.
func TestDialContextRefused(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			before := openFds(t)
			c, err := r.DialContext(context.Background(), "tcp", addr)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("DialContext to a closed port: %v, %v", c, err)
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "dial" {
				t.Fatalf("error %#v is not a dial *net.OpError", err)
			}
			waitFor(t, 5*time.Second, "the failed dial's fd closed", func() bool { return openFds(t) == before })
		})
	}
}

// TestDialContextEndsWithCtx: a connect that cannot finish (the listener's
// accept queue is full, so the kernel drops the SYN) ends when ctx does,
// with ctx's error in the chain, and leaves no fd behind; a ctx already
// done fails at once.
func TestDialContextEndsWithCtx(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			addr := fullListener(t)
			before := openFds(t)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			c, err := r.DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
				t.Skip("the kernel completed a connect to a full accept queue here")
			}
			var ne net.Error
			if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("DialContext past its deadline: %v", err)
			}
			waitFor(t, 5*time.Second, "the canceled dial's fd closed", func() bool { return openFds(t) == before })

			done, cancel2 := context.WithCancel(context.Background())
			cancel2()
			if _, err := r.DialContext(done, "tcp", addr); !errors.Is(err, context.Canceled) {
				t.Fatalf("DialContext with a done ctx: %v", err)
			}
		})
	}
}

// fullListener returns the address of a listening socket (backlog 0) whose
// accept queue is full: a further connect stays in SYN_SENT. The sockets
// are closed at cleanup.
func fullListener(t *testing.T) string {
	t.Helper()
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(lfd) })
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", itoa(sa.(*unix.SockaddrInet4).Port))
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr // this one was dropped: the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill a backlog-0 accept queue")
	return ""
}

// TestFileListenerAndConn adopts an inherited listening socket and a
// connected one from *os.Files, as with systemd socket activation.
func TestFileListenerAndConn(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			std, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			f, err := std.(*net.TCPListener).File()
			std.Close()
			if err != nil {
				t.Fatal(err)
			}
			ln, err := r.FileListener(f)
			f.Close() // the listener has a copy of its own
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if ln.Addr().String() != std.Addr().String() {
				t.Fatalf("adopted listener on %v, want %v", ln.Addr(), std.Addr())
			}
			c := dialStd(t, ln.Addr().String())
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			echoOnce(t, c, s)

			// FileConn on one end of a socketpair.
			a, p := socketpair(t)
			fa := os.NewFile(uintptr(a), "pair")
			conn, err := r.FileConn(fa)
			fa.Close()
			if err != nil {
				unix.Close(p)
				t.Fatal(err)
			}
			defer conn.Close()
			fp := os.NewFile(uintptr(p), "peer")
			peer, err := net.FileConn(fp)
			fp.Close()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			echoOnce(t, peer, conn)

			// Misuse is an error, not a conn of the wrong kind.
			std2, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer std2.Close()
			lf, err := std2.(*net.TCPListener).File()
			if err != nil {
				t.Fatal(err)
			}
			defer lf.Close()
			if c, err := r.FileConn(lf); err == nil {
				c.Close()
				t.Error("FileConn accepted a listening socket")
			}
			if l, err := r.FileListener(fp); err == nil { // closed above
				l.Close()
				t.Error("FileListener accepted a closed file")
			}
			reg, err := os.Open(os.Args[0])
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			if l, err := r.FileListener(reg); err == nil {
				l.Close()
				t.Error("FileListener accepted a regular file")
			}
		})
	}
}

// dialStd connects with the standard library; closed at cleanup.
func dialStd(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoOnce sends a message from a to b and back.
func echoOnce(t *testing.T, a, b net.Conn) {
	t.Helper()
	for _, c := range []net.Conn{a, b} {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	buf := make([]byte, 5)
	if _, err := a.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if _, err := b.Write(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read back %q, %v", buf, err)
	}
}
