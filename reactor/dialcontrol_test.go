package reactor_test

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// controlCall is one call of a NetConfig.Control hook.
type controlCall struct {
	network, address string
	fd               int
}

// recordControl returns a Control hook that records its calls, sets opt
// to val on the socket and then fails with fail (nil: succeeds).
func recordControl(calls *[]controlCall, opt, val int, fail error) func(string, string, syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			*calls = append(*calls, controlCall{network, address, int(fd)})
			if opt != 0 {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, val)
			}
		}); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		return fail
	}
}

// TestNetConfigControl: NetListenWith and DialWith run NetConfig.Control
// on each socket before it is bound or connected, with net's arguments: a
// listener's SO_REUSEPORT set there lets a second one bind the same port
// (which fails without it), a dial's SO_SNDBUF set there is on the
// connection, and the hook's error fails the listen or dial with that
// error in its chain.
func TestNetConfigControl(t *testing.T) {
	boom := errors.New("boom")
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			var calls []controlCall
			cfg := reactor.NetConfig{Control: recordControl(&calls, unix.SO_REUSEPORT, 1, nil)}
			ln1, err := r.NetListenWith("tcp4", "127.0.0.1:0", cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ln1.Close()
			addr := ln1.Addr().String()
			if _, err := r.NetListenWith("tcp4", addr, reactor.NetConfig{}); !errors.Is(err, unix.EADDRINUSE) {
				t.Fatalf("a second listener on %s without SO_REUSEPORT: %v, want EADDRINUSE", addr, err)
			}
			ln2, err := r.NetListenWith("tcp4", addr, cfg)
			if err != nil {
				t.Fatalf("a second listener on %s, SO_REUSEPORT set by Control: %v", addr, err)
			}
			defer ln2.Close()
			if len(calls) != 2 || calls[0] != (controlCall{"tcp4", "127.0.0.1:0", calls[0].fd}) || calls[1].address != addr {
				t.Fatalf("listen Control calls %+v, want (tcp4, 127.0.0.1:0) then (tcp4, %s)", calls, addr)
			}
			if _, err := r.NetListenWith("tcp", "127.0.0.1:0", reactor.NetConfig{Control: recordControl(new([]controlCall), 0, 0, boom)}); !errors.Is(err, boom) {
				t.Fatalf("NetListenWith whose Control fails: %v, want boom in its chain", err)
			}

			calls = nil
			c, err := r.DialWith(t.Context(), "tcp", addr, reactor.NetConfig{Control: recordControl(&calls, unix.SO_SNDBUF, 32<<10, nil)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if len(calls) != 1 || calls[0].network != "tcp4" || calls[0].address != addr {
				t.Fatalf("dial Control calls %+v, want one (tcp4, %s)", calls, addr)
			}
			rc, _ := c.SyscallConn()
			var fd, sndbuf int
			rc.Control(func(s uintptr) { fd = int(s); sndbuf, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF) })
			if fd != calls[0].fd || sndbuf != 64<<10 { // the kernel doubles what is set
				t.Fatalf("dialed conn: fd %d, SO_SNDBUF %d; Control saw fd %d and set 32 KiB (64 KiB read back)", fd, sndbuf, calls[0].fd)
			}
			if _, err := r.DialWith(t.Context(), "tcp", addr, reactor.NetConfig{Control: recordControl(new([]controlCall), 0, 0, boom)}); !errors.Is(err, boom) {
				t.Fatalf("DialWith whose Control fails: %v, want boom in its chain", err)
			}
		})
	}
}

// TestNetConfigLocalAddr: DialWith binds to NetConfig.LocalAddr before it
// connects: the peer sees the connection come from it (TCP, and a Unix
// socket's path); a LocalAddr of another family than every address, or of
// another network's type, fails the dial with net's error.
func TestNetConfigLocalAddr(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			ln := netListen(t, r, "tcp")
			accepted := make(chan net.Conn, 1)
			go func() {
				for {
					s, err := ln.Accept()
					if err != nil {
						return
					}
					accepted <- s
				}
			}()
			c, err := r.DialWith(t.Context(), "tcp", ln.Addr().String(), reactor.NetConfig{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := <-accepted
			defer s.Close()
			if ip := s.RemoteAddr().(*net.TCPAddr).IP.String(); ip != "127.0.0.2" || c.LocalAddr().(*net.TCPAddr).IP.String() != "127.0.0.2" {
				t.Fatalf("dial from 127.0.0.2: the peer saw %s, the conn's LocalAddr %s", s.RemoteAddr(), c.LocalAddr())
			}
			port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
			for _, tc := range []struct {
				name  string
				local net.Addr
				want  string
			}{
				{"IPv6 local, IPv4 peer", &net.TCPAddr{IP: net.IPv6loopback}, "no suitable address found"},
				{"a Unix local address", &net.UnixAddr{Name: "x", Net: "unix"}, "mismatched local address type"},
			} {
				_, err := r.DialWith(t.Context(), "tcp", "127.0.0.1:"+port, reactor.NetConfig{LocalAddr: tc.local})
				var ae *net.AddrError
				if !errors.As(err, &ae) || !strings.Contains(ae.Err, tc.want) {
					t.Errorf("%s: %v, want a *net.AddrError %q", tc.name, err, tc.want)
				}
			}

			uln := netListen(t, r, "unix")
			go func() {
				if s, err := uln.Accept(); err == nil {
					accepted <- s
				}
			}()
			local := t.TempDir() + "/client.sock"
			uc, err := r.DialWith(t.Context(), "unix", uln.Addr().String(), reactor.NetConfig{LocalAddr: &net.UnixAddr{Name: local, Net: "unix"}})
			if err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			us := <-accepted
			defer us.Close()
			if got := us.RemoteAddr().String(); got != local {
				t.Fatalf("Unix dial bound to %s: the peer saw %q", local, got)
			}
		})
	}
}

// TestNetConfigLocalAddrAsNet: DialWith treats LocalAddr as net.Dialer
// does, each case dialed by both: an unspecified IP (0.0.0.0, ::) binds
// only its port, in either family; an empty host with an IPv6 LocalAddr
// dials the local system over IPv6; a malformed IP fails, never panics; a
// Unix LocalAddr with no name binds nothing. A Control hook's RawConn
// kept past the hook refuses, as net's does once its fd is gone.
func TestNetConfigLocalAddrAsNet(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			ln4, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln4.Close()
			ln6, err := net.Listen("tcp6", "[::1]:0")
			if err != nil {
				t.Skipf("no IPv6 loopback here: %v", err)
			}
			defer ln6.Close()
			for _, l := range []net.Listener{ln4, ln6} {
				go func() {
					for {
						c, err := l.Accept()
						if err != nil {
							return
						}
						c.Close()
					}
				}()
			}
			p6 := strconv.Itoa(ln6.Addr().(*net.TCPAddr).Port)
			for _, tc := range []struct {
				network, address string
				local            net.Addr
				ok               bool
			}{
				{"tcp", ln4.Addr().String(), &net.TCPAddr{IP: net.IPv6unspecified}, true},
				{"tcp", "[::1]:" + p6, &net.TCPAddr{IP: net.IPv4zero}, true},
				{"tcp6", "[::1]:" + p6, &net.TCPAddr{IP: net.IPv4zero}, true},
				{"tcp", ":" + p6, &net.TCPAddr{IP: net.IPv6loopback}, true},
				{"tcp", "[::1]:" + p6, &net.TCPAddr{}, true},
				{"tcp", "[::1]:" + p6, &net.TCPAddr{IP: net.IP{}}, false},
				{"tcp", "[::1]:" + p6, &net.TCPAddr{IP: net.IP{1, 2, 3, 4, 5}}, false},
				{"tcp", ln4.Addr().String(), &net.TCPAddr{IP: net.IP{1, 2, 3, 4, 5}}, false},
			} {
				what := tc.network + " " + tc.address + " from " + tc.local.String()
				nc, nerr := (&net.Dialer{LocalAddr: tc.local}).DialContext(t.Context(), tc.network, tc.address)
				if nc != nil {
					nc.Close()
				}
				c, err := r.DialWith(t.Context(), tc.network, tc.address, reactor.NetConfig{LocalAddr: tc.local})
				if c != nil {
					c.Close()
				}
				if (err == nil) != tc.ok || (nerr == nil) != tc.ok {
					t.Errorf("%s: DialWith: %v; net.Dialer: %v; want both to succeed: %v", what, err, nerr, tc.ok)
				}
			}

			path := t.TempDir() + "/s.sock"
			uln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer uln.Close()
			go func() {
				for {
					c, err := uln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			unnamed := &net.UnixAddr{Name: "", Net: "unix"}
			nc, err := (&net.Dialer{LocalAddr: unnamed}).Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			c, err := r.DialWith(t.Context(), "unix", path, reactor.NetConfig{LocalAddr: unnamed})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got, want := c.LocalAddr().String(), nc.LocalAddr().String(); got != want {
				t.Errorf("Unix dial from an unnamed LocalAddr: local %q, net's %q (bound where net binds nothing)", got, want)
			}

			var kept syscall.RawConn
			c2, err := r.DialWith(t.Context(), "tcp", ln4.Addr().String(), reactor.NetConfig{Control: func(_, _ string, rc syscall.RawConn) error {
				kept = rc
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			c2.Close()
			if err := kept.Control(func(uintptr) { t.Error("a Control hook's RawConn ran f after the hook returned") }); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Control on a hook's RawConn kept past the hook: %v, want net.ErrClosed", err)
			}
		})
	}
}
