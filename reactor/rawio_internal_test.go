//go:build linux

package reactor

import (
	"net"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRawAcceptMatchesAccept4: rawAccept with sockaddrOf reports each kind
// of peer as unix.Accept4 does (IPv4, IPv6, a named, an unnamed and an
// abstract Unix peer), reusing one address buffer across accepts, so that
// a stale name from an earlier accept never shows through; a Conn's inline
// form of the same buffer (peerOfRaw) gives the same net.Addr; the fd is
// non-blocking and close-on-exec.
func TestRawAcceptMatchesAccept4(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		family int
		listen unix.Sockaddr
		bind   unix.Sockaddr // the client's own address; nil: unnamed
	}{
		{"ipv4", unix.AF_INET, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}, nil},
		{"ipv6", unix.AF_INET6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}}, nil},
		{"unix named", unix.AF_UNIX, &unix.SockaddrUnix{Name: dir + "/l1"}, &unix.SockaddrUnix{Name: dir + "/a-long-client-name"}},
		{"unix unnamed", unix.AF_UNIX, &unix.SockaddrUnix{Name: dir + "/l2"}, nil},
		{"unix abstract", unix.AF_UNIX, &unix.SockaddrUnix{Name: dir + "/l3"}, &unix.SockaddrUnix{Name: "@oneshot-rawaccept-test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rsa unix.RawSockaddrAny
			for i := range rsa.Addr.Data { // what an earlier accept left
				rsa.Addr.Data[i] = 'x'
			}
			for i := range rsa.Pad {
				rsa.Pad[i] = 'x'
			}
			ls, err := unix.Socket(tc.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Skipf("socket: %v", err)
			}
			defer unix.Close(ls)
			if err := unix.Bind(ls, tc.listen); err != nil {
				t.Skipf("bind: %v", err)
			}
			if err := unix.Listen(ls, 8); err != nil {
				t.Fatal(err)
			}
			addr, err := unix.Getsockname(ls)
			if err != nil {
				t.Fatal(err)
			}
			dial := func(i int) int {
				c, err := unix.Socket(tc.family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				if tc.bind != nil {
					name := tc.bind.(*unix.SockaddrUnix).Name + string(rune('0'+i))
					if err := unix.Bind(c, &unix.SockaddrUnix{Name: name}); err != nil {
						t.Fatal(err)
					}
				}
				if err := unix.Connect(c, addr); err != nil {
					t.Fatal(err)
				}
				return c
			}
			c1 := dial(1)
			defer unix.Close(c1)
			want1, err := unix.Getsockname(c1)
			if err != nil {
				t.Fatal(err)
			}
			fd, err := rawAccept(ls, &rsa)
			if err != nil {
				t.Fatalf("rawAccept: %v", err)
			}
			defer unix.Close(fd)
			peer, x := peerOfRaw(&rsa)
			got, err := sockaddrOf(&rsa)
			if err != nil {
				t.Fatalf("sockaddrOf: %v", err)
			}
			isUnix := tc.family == unix.AF_UNIX
			if a, b := peer.addr(x, isUnix), sockaddrToAddr(got, isUnix); !reflect.DeepEqual(a, b) {
				t.Fatalf("inline peer address %#v, from the Sockaddr %#v", a, b)
			}
			c2 := dial(2)
			defer unix.Close(c2)
			fd2, want, err := unix.Accept4(ls, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd2)
			if tc.family == unix.AF_UNIX {
				// Each accept names its own peer; both are the same kind.
				if !reflect.DeepEqual(got, want) && tc.bind == nil {
					t.Fatalf("unnamed peer: rawAccept %#v, Accept4 %#v", got, want)
				}
				if tc.bind != nil {
					name := tc.bind.(*unix.SockaddrUnix).Name + "1"
					if g := got.(*unix.SockaddrUnix).Name; g != name {
						t.Fatalf("peer %q: rawAccept says %q (Accept4: %q)", name, g, want.(*unix.SockaddrUnix).Name)
					}
				}
			} else {
				// The peers differ only in their ports.
				if reflect.TypeOf(got) != reflect.TypeOf(want) || !reflect.DeepEqual(got, want1) {
					t.Fatalf("rawAccept %#v, want %#v (Accept4 gives %T)", got, want1, want)
				}
			}
			flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
			if err != nil || flags&unix.O_NONBLOCK == 0 {
				t.Fatalf("accepted fd flags %#x, %v: want O_NONBLOCK", flags, err)
			}
			if fdf, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fdf&unix.FD_CLOEXEC == 0 {
				t.Fatalf("accepted fd: FD_CLOEXEC missing (%#x, %v)", fdf, err)
			}
		})
	}
	var rsa unix.RawSockaddrAny
	if _, err := rawAccept(-1, &rsa); err != unix.EBADF {
		t.Fatalf("rawAccept(-1) = %v, want EBADF", err)
	}
}

// TestPeerOfMatchesSockaddr: a Dial's peer (from getpeername) kept inline
// in its Conn reads back as the net.Addr its Sockaddr gives, for each kind
// of address, with and without the parts kept in the rare part.
func TestPeerOfMatchesSockaddr(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sa     unix.Sockaddr
		isUnix bool
		rare   bool // the address needs the Conn's rare part
	}{
		{"ipv4", &unix.SockaddrInet4{Port: 7007, Addr: [4]byte{10, 1, 2, 3}}, false, false},
		{"ipv6", &unix.SockaddrInet6{Port: 443, Addr: [16]byte{0: 0x20, 1: 0x01, 15: 9}}, false, false},
		{"ipv6 with a zone", &unix.SockaddrInet6{Port: 1, Addr: [16]byte{0: 0xfe, 1: 0x80, 15: 1}, ZoneId: 1}, false, true},
		{"unix named", &unix.SockaddrUnix{Name: "/run/x.sock"}, true, true},
		{"unix unnamed", &unix.SockaddrUnix{Name: "@"}, true, false},
		{"unknown, tcp", nil, false, false}, // the zero TCPAddr, not nil (see below)
		{"unknown, unix", nil, true, false},
	} {
		p, x := peerOf(tc.sa)
		if (x != nil) != tc.rare {
			t.Errorf("%s: rare part %v, want one: %v", tc.name, x, tc.rare)
		}
		want := sockaddrToAddr(tc.sa, tc.isUnix)
		if want == nil {
			want = &net.TCPAddr{} // RemoteAddr is never nil
		}
		if a := p.addr(x, tc.isUnix); !reflect.DeepEqual(a, want) {
			t.Errorf("%s: inline %#v, want %#v", tc.name, a, want)
		}
	}
}
