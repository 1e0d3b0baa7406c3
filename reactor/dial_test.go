package reactor_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
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
			before := openFdSet(t)
			c, err := r.DialContext(context.Background(), "tcp", addr)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("DialContext to a closed port: %v, %v", c, err)
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "dial" {
				t.Fatalf("error %#v is not a dial *net.OpError", err)
			}
			waitFor(t, 5*time.Second, "the failed dial's fd closed", func() bool { return len(before.changed(t)) == 0 })
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
			before := openFdSet(t)
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
			waitFor(t, 5*time.Second, "the canceled dial's fd closed", func() bool { return len(before.changed(t)) == 0 })

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
func fullListener(t *testing.T) string { return fullListenerOn(t, [4]byte{127, 0, 0, 1}) }

// fullListenerOn is fullListener on ip; a test skips, saying why, where
// ip cannot be bound.
func fullListenerOn(t *testing.T, ip [4]byte) string {
	t.Helper()
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(lfd) })
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: ip}); err != nil {
		t.Skipf("cannot bind %v here: %v", net.IP(ip[:]), err)
	}
	if err := unix.Listen(lfd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(net.IP(ip[:]).String(), itoa(sa.(*unix.SockaddrInet4).Port))
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

// tcpAddr parses a loopback "host:port" a test listens on.
func tcpAddr(t *testing.T, s string) *net.TCPAddr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// listening returns the address of a loopback listener that accepts
// nothing (the kernel completes connects into its queue), and refused
// one where nobody listens.
func listening(t *testing.T) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr)
}

func refused(t *testing.T) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().(*net.TCPAddr)
	ln.Close()
	return a
}

// TestDialSharesTheDeadline: a dial of several addresses gives each an
// equal share of the time left (at least 2s, as net.Dialer), so an
// address that drops SYNs (a full accept queue) leaves time for the next:
// with 3s and two addresses the second connects after about 2s. Tried
// with all of ctx's time, the first used it all and the dial failed.
func TestDialSharesTheDeadline(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			hole, good := tcpAddr(t, fullListener(t)), listening(t)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			start := time.Now()
			peer, err := reactor.DialAddrs(ctx, r, []*net.TCPAddr{hole, good}, nil, 0)
			took := time.Since(start)
			if err != nil || peer.String() != good.String() {
				t.Fatalf("dial of [SYN-dropping, listening] = %v, %v after %v; want %v", peer, err, took, good)
			}
			if took < 1900*time.Millisecond {
				t.Fatalf("connected after %v: the SYN-dropping address was not tried for its 2s", took)
			}
		})
	}
}

// TestDialFallback: a dial with fallbacks (in a real dial, the other
// family's addresses) starts them after the delay while the primaries
// still wait, or at once when the primaries fail; the first to connect
// wins and the primaries' dial is canceled, its socket closed; when both
// fail the primaries' error is returned; canceling ctx ends both.
func TestDialFallback(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			hole, hole2 := tcpAddr(t, fullListener(t)), tcpAddr(t, fullListener(t))
			good, good2, down, down2 := listening(t), listening(t), refused(t), refused(t)
			before := openFdSet(t)
			addrs := func(as ...*net.TCPAddr) []*net.TCPAddr { return as }
			for _, tc := range []struct {
				name                string
				primaries, fallback []*net.TCPAddr
				delay               time.Duration
				want                *net.TCPAddr // nil: the dial fails
				wantErr             string
			}{
				{"primary waits, fallback after the delay", addrs(hole), addrs(good), 50 * time.Millisecond, good, ""},
				{"primary refused, fallback at once", addrs(down), addrs(good), time.Hour, good, ""},
				{"primary connects", addrs(good), addrs(hole), time.Hour, good, ""},
				{"both at once, one wins", addrs(good), addrs(good2), 0, nil, ""},
				{"both refused", addrs(down), addrs(down2), 50 * time.Millisecond, nil, down.String()},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				start := time.Now()
				peer, err := reactor.DialAddrs(ctx, r, tc.primaries, tc.fallback, tc.delay)
				cancel()
				took := time.Since(start)
				switch {
				case tc.want == nil && tc.wantErr == "":
					if err != nil || (peer.String() != good.String() && peer.String() != good2.String()) {
						t.Errorf("%s: dial = %v, %v; want either listener", tc.name, peer, err)
					}
				case tc.want != nil && (err != nil || peer.String() != tc.want.String()):
					t.Errorf("%s: dial = %v, %v; want %v", tc.name, peer, err, tc.want)
				case tc.want == nil && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
					t.Errorf("%s: dial = %v, %v; want the primary's error, naming %s", tc.name, peer, err, tc.wantErr)
				case took > 5*time.Second:
					t.Errorf("%s: took %v", tc.name, took)
				}
				waitFor(t, 5*time.Second, tc.name+": every socket of the dial closed", func() bool { return len(before.changed(t)) == 0 })
			}

			// Whether a loser connects too is the scheduler's choice (about
			// half of the tries), so 20 tries catch one left open.
			for range 20 {
				if _, err := reactor.DialAddrs(context.Background(), r, addrs(good), addrs(good2), 0); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 5*time.Second, "a loser's socket closed", func() bool { return len(before.changed(t)) == 0 })
			}

			// Canceled while both wait on SYN-dropping addresses.
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			if _, err := reactor.DialAddrs(ctx, r, addrs(hole), addrs(hole2), 10*time.Millisecond); !errors.Is(err, context.Canceled) {
				t.Fatalf("dial canceled while both families wait: %v", err)
			}
			waitFor(t, 5*time.Second, "the canceled dial's sockets closed", func() bool { return len(before.changed(t)) == 0 })
		})
	}
}

// TestDialEndedStartsNoFallback: a dial that ends while its first family
// still waits (ctx canceled, its deadline, the reactor's Close) fails
// with that, and dials nothing more: the fallback's listener sees no
// connection, as with net.Dialer, which looks at ctx before each address.
func TestDialEndedStartsNoFallback(t *testing.T) {
	for _, b := range backends {
		for _, end := range []string{"cancel", "deadline", "close"} {
			t.Run(name(b)+"/"+end, func(t *testing.T) {
				r := newReactor(t, b, 1)
				hole := tcpAddr(t, fullListener(t))
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var want error = context.Canceled
				switch end {
				case "cancel":
					time.AfterFunc(100*time.Millisecond, cancel)
				case "deadline":
					ctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
					defer cancel()
					want = context.DeadlineExceeded
				case "close":
					time.AfterFunc(100*time.Millisecond, func() { r.Close() })
					want = reactor.ErrClosed
				}
				_, err = reactor.DialAddrs(ctx, r, []*net.TCPAddr{hole}, []*net.TCPAddr{ln.Addr().(*net.TCPAddr)}, time.Hour)
				if !errors.Is(err, want) {
					t.Fatalf("dial ended by %s: %v; want %v", end, err, want)
				}
				ln.(*net.TCPListener).SetDeadline(time.Now().Add(300 * time.Millisecond))
				if c, err := ln.Accept(); err == nil {
					c.Close()
					t.Fatalf("the fallback was dialed after the dial ended by %s", end)
				}
			})
		}
	}
}

// fakeDNS serves A and AAAA answers for one name over UDP on loopback, and
// returns a Resolver that asks it (and nobody else). Go's resolver asks
// DNS only where nsswitch.conf lets it: with "hosts: files" alone the
// dial fails with "no such host".
func fakeDNS(t *testing.T, name string, addrs ...netip.Addr) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
			for _, a := range addrs {
				switch {
				case q.Name.String() != name:
				case q.Type == dnsmessage.TypeA && a.Is4():
					b.AResource(rh, dnsmessage.AResource{A: a.As4()})
				case q.Type == dnsmessage.TypeAAAA && a.Is6():
					b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
				}
			}
			if msg, err := b.Finish(); err == nil {
				pc.WriteTo(msg, from)
			}
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// TestDialWithResolver: DialWith resolves through NetConfig.Resolver, and
// a name's addresses are dialed as net.Dialer dials them: with two IPv4
// addresses, the first dropping SYNs, the second connects once the first
// has had its share (2 of 3s); with an IPv6 address nobody listens on and
// an IPv4 one that listens, the IPv4 one connects at once, whichever
// comes first, racing or (FallbackDelay negative) not.
func TestDialWithResolver(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			hole := tcpAddr(t, fullListenerOn(t, [4]byte{127, 0, 0, 2}))
			good, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", itoa(hole.Port)))
			if err != nil {
				t.Skipf("no second listener on the port of the first: %v", err)
			}
			defer good.Close()
			port := itoa(hole.Port)

			res := fakeDNS(t, "two.test.", netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1"))
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			c, err := r.DialWith(ctx, "tcp", "two.test:"+port, reactor.NetConfig{Resolver: res})
			if err != nil {
				t.Fatalf("DialWith(two.test) = %v; want the second address", err)
			}
			if got := c.RemoteAddr().String(); got != good.Addr().String() {
				t.Errorf("DialWith(two.test) reached %s, want %s", got, good.Addr())
			}
			c.Close()

			if ln6, err := net.Listen("tcp6", "[::1]:0"); err != nil {
				t.Logf("no IPv6 loopback here, dual-stack case skipped: %v", err)
				return
			} else {
				ln6.Close()
			}
			res = fakeDNS(t, "dual.test.", netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.1"))
			for _, delay := range []time.Duration{0, -1} {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				c, err := r.DialWith(ctx, "tcp", "dual.test:"+port, reactor.NetConfig{Resolver: res, FallbackDelay: delay})
				if err != nil {
					t.Fatalf("DialWith(dual.test), FallbackDelay %v = %v; want the IPv4 address", delay, err)
				}
				if got := c.RemoteAddr().String(); got != good.Addr().String() {
					t.Errorf("DialWith(dual.test), FallbackDelay %v reached %s, want %s", delay, got, good.Addr())
				}
				c.Close()
			}
		})
	}
}
