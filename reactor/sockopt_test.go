package reactor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// twoWrites answers each request byte with a header and a body written
// separately, as an HTTP-style handler does.
type twoWrites struct{}

const (
	twoWritesHeader = 16
	twoWritesBody   = 100
)

func (twoWrites) OnOpen(*reactor.Conn) {}
func (twoWrites) OnData(c *reactor.Conn, b []byte) {
	for range b {
		c.Write(make([]byte, twoWritesHeader))
		c.Write(make([]byte, twoWritesBody))
	}
}
func (twoWrites) OnClose(*reactor.Conn, error) {}

// twoWriteRoundTrips serves twoWrites on r with cfg and returns the median
// of 20 request/reply round trips from a std client (which has NODELAY on).
func twoWriteRoundTrips(t *testing.T, r *reactor.Reactor, cfg reactor.ListenConfig) time.Duration {
	t.Helper()
	ln, err := r.Listen("tcp", "127.0.0.1:0", twoWrites{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := dial(t, ln)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	reply := make([]byte, twoWritesHeader+twoWritesBody)
	var rtts []time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		if _, err := c.Write([]byte{'?'}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, reply); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	t.Logf("%s NoDelay=%v: round trips min %v median %v max %v", r.Backend(), cfg.NoDelay, rtts[0], rtts[len(rtts)/2], rtts[len(rtts)-1])
	return rtts[len(rtts)/2]
}

// nagleStall is well under the delayed ACK that Nagle's algorithm waits
// for on Linux (40 ms at least) and far above a loopback round trip.
const nagleStall = 20 * time.Millisecond

// TestTwoWriteReplyNoNagleStall: with the default ListenConfig an accepted
// Conn has TCP_NODELAY, so a reply written in two pieces is not held back
// until the client's delayed ACK.
func TestTwoWriteReplyNoNagleStall(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			if m := twoWriteRoundTrips(t, newReactor(t, b, 2), reactor.ListenConfig{}); m >= nagleStall {
				t.Fatalf("median round trip %v with the default NoDelay: Nagle stall", m)
			}
		})
	}
}

// TestTwoWriteReplyStallsWithNagle is the control of the test above: with
// NODELAY forced off the same measurement does see the stall, so a
// regression in the default would fail it. It runs where a lone
// connection's Writes are each a write(2), as they are by default on every
// path (ringSendBatch): the test row that sends every handler call's Writes
// through the ring coalesces them (TestRingSendsAHandlerCallsWritesAsOne).
func TestTwoWriteReplyStallsWithNagle(t *testing.T) {
	for _, b := range connBackends {
		if b.kind == reactor.BackendUring && b.io == reactor.IOAuto {
			continue
		}
		t.Run(name(b), func(t *testing.T) {
			if m := twoWriteRoundTrips(t, newReactor(t, b, 2), reactor.ListenConfig{NoDelay: reactor.ToggleOff}); m < nagleStall {
				t.Fatalf("median round trip %v with NoDelay off: no stall, so the measurement proves nothing", m)
			}
		})
	}
}

// TestRingSendsAHandlerCallsWritesAsOne: through the ring, the two Writes
// of one handler call leave in one send, so even with NODELAY off the
// reply is not split and not held back for the client's delayed ACK.
func TestRingSendsAHandlerCallsWritesAsOne(t *testing.T) {
	r := newReactor(t, backend{kind: reactor.BackendUring}, 2)
	if !strings.HasPrefix(r.IOPath(), "ring") {
		t.Skipf("no ring I/O here: %s", r.IOPath())
	}
	if m := twoWriteRoundTrips(t, r, reactor.ListenConfig{NoDelay: reactor.ToggleOff}); m >= nagleStall {
		t.Fatalf("median round trip %v with NoDelay off: the reply went out in two sends", m)
	}
}

// sockOpts is what the tests read back from a TCP socket.
type sockOpts struct {
	noDelay, keepAlive, idle, intvl int
}

func readSockOpts(fd int) (sockOpts, error) {
	var o sockOpts
	for _, g := range []struct {
		level, opt int
		dst        *int
	}{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, &o.noDelay},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, &o.keepAlive},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, &o.idle},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, &o.intvl},
	} {
		v, err := unix.GetsockoptInt(fd, g.level, g.opt)
		if err != nil {
			return o, err
		}
		*g.dst = v
	}
	return o, nil
}

func rawSockOpts(t *testing.T, c net.Conn) sockOpts {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var o sockOpts
	var gerr error
	if err := rc.Control(func(fd uintptr) { o, gerr = readSockOpts(int(fd)) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return o
}

var goDefaults = sockOpts{noDelay: 1, keepAlive: 1, idle: 15, intvl: 15}

// optsAtOpen records the options of each Conn as OnOpen sees it.
type optsAtOpen struct{ got chan sockOpts }

func (h optsAtOpen) OnOpen(c *reactor.Conn) {
	o, err := readSockOpts(c.Fd())
	if err != nil {
		o = sockOpts{noDelay: -1}
	}
	h.got <- o
}
func (optsAtOpen) OnData(*reactor.Conn, []byte) {}
func (optsAtOpen) OnClose(*reactor.Conn, error) {}

// TestCallbackConnSockDefaults: accepted callback Conns get Go's defaults
// (NODELAY, keepalive 15s) unless ListenConfig says otherwise.
func TestCallbackConnSockDefaults(t *testing.T) {
	for _, b := range backends {
		for _, tc := range []struct {
			name string
			cfg  reactor.ListenConfig
			want sockOpts
		}{
			{"default", reactor.ListenConfig{}, goDefaults},
			{"on,30s", reactor.ListenConfig{NoDelay: reactor.ToggleOn, KeepAlive: 30 * time.Second}, sockOpts{1, 1, 30, 30}},
			{"off", reactor.ListenConfig{NoDelay: reactor.ToggleOff, KeepAlive: -1}, sockOpts{noDelay: 0, keepAlive: 0}},
		} {
			t.Run(name(b)+"/"+tc.name, func(t *testing.T) {
				r := newReactor(t, b, 2)
				h := optsAtOpen{got: make(chan sockOpts, 1)}
				ln, err := r.Listen("tcp", "127.0.0.1:0", h, tc.cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				dial(t, ln)
				got := <-h.got
				if tc.want.keepAlive == 0 {
					got.idle, got.intvl = 0, 0 // the kernel's, unused
				}
				if got != tc.want {
					t.Fatalf("accepted socket options %+v, want %+v", got, tc.want)
				}
			})
		}
	}
}

// TestNetConnSockDefaults: NetListen's accepted and DialContext's dialed
// TCP conns get Go's defaults, and the setters change them.
func TestNetConnSockDefaults(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			dialed, accepted := tcpPair(t, r)
			for what, c := range map[string]net.Conn{"dialed": dialed, "accepted": accepted} {
				if got := rawSockOpts(t, c); got != goDefaults {
					t.Errorf("%s: options %+v, want %+v", what, got, goDefaults)
				}
			}
			nc := dialed.(*reactor.NetConn)
			if err := nc.SetNoDelay(false); err != nil {
				t.Fatal(err)
			}
			if err := nc.SetKeepAlivePeriod(time.Minute); err != nil {
				t.Fatal(err)
			}
			if got, want := rawSockOpts(t, nc), (sockOpts{0, 1, 60, 60}); got != want {
				t.Errorf("after SetNoDelay(false), SetKeepAlivePeriod(1m): %+v, want %+v", got, want)
			}
			if err := nc.SetKeepAlive(false); err != nil {
				t.Fatal(err)
			}
			if got := rawSockOpts(t, nc); got.keepAlive != 0 {
				t.Errorf("after SetKeepAlive(false): %+v", got)
			}
		})
	}
}

// TestNetConfig: NetListenWith's and DialWith's options reach the sockets
// they accept and dial.
func TestNetConfig(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			ln, err := r.NetListenWith("tcp", "127.0.0.1:0",
				reactor.NetConfig{NoDelay: reactor.ToggleOff, KeepAlive: 30 * time.Second, Backlog: 8})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, _ := ln.Accept()
				accepted <- c
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			dialed, err := r.DialWith(ctx, "tcp", ln.Addr().String(), reactor.NetConfig{KeepAlive: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer dialed.Close()
			a := <-accepted
			if a == nil {
				t.Fatal("Accept failed")
			}
			defer a.Close()
			if got, want := rawSockOpts(t, a), (sockOpts{0, 1, 30, 30}); got != want {
				t.Errorf("accepted: %+v, want %+v", got, want)
			}
			if got := rawSockOpts(t, dialed); got.noDelay != 1 || got.keepAlive != 0 {
				t.Errorf("dialed with KeepAlive -1: %+v, want NODELAY on, keepalive off", got)
			}
		})
	}
}

// moreOpts are the options the net.TCPConn setters NetConn mirrors reach.
type moreOpts struct {
	linger                 unix.Linger
	rcvbuf, sndbuf         int
	keepAlive, idle, intvl int
	count                  int
}

func rawMoreOpts(t *testing.T, c net.Conn) moreOpts {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var o moreOpts
	var errs []error
	get := func(fd, level, opt int) int {
		v, err := unix.GetsockoptInt(fd, level, opt)
		errs = append(errs, err)
		return v
	}
	if err := rc.Control(func(u uintptr) {
		fd := int(u)
		l, err := unix.GetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER)
		errs = append(errs, err)
		o = moreOpts{
			linger: *l,
			rcvbuf: get(fd, unix.SOL_SOCKET, unix.SO_RCVBUF), sndbuf: get(fd, unix.SOL_SOCKET, unix.SO_SNDBUF),
			keepAlive: get(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE),
			idle:      get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE), intvl: get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL),
			count: get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
		}
	}); err != nil {
		t.Fatal(err)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// tcpSetters are the net.TCPConn setters NetConn has too.
type tcpSetters interface {
	SetKeepAliveConfig(net.KeepAliveConfig) error
	SetLinger(sec int) error
	SetReadBuffer(bytes int) error
	SetWriteBuffer(bytes int) error
}

var _ tcpSetters = (*net.TCPConn)(nil)

// TestNetConnSettersAsNet: SetLinger, SetReadBuffer, SetWriteBuffer and
// SetKeepAliveConfig leave a NetConn's socket as the same calls leave a
// net.TCPConn's, defaults and negative "leave it" fields included; after
// Close they fail with net.ErrClosed.
func TestNetConnSettersAsNet(t *testing.T) {
	kac := func(c tcpSetters, cfg net.KeepAliveConfig) error { return c.SetKeepAliveConfig(cfg) }
	for _, tc := range []struct {
		name string
		set  func(tcpSetters) error
	}{
		{"linger -1", func(c tcpSetters) error { return c.SetLinger(-1) }},
		{"linger 0", func(c tcpSetters) error { return c.SetLinger(0) }},
		{"linger 7", func(c tcpSetters) error { return c.SetLinger(7) }},
		{"read buffer 4 KiB", func(c tcpSetters) error { return c.SetReadBuffer(4 << 10) }},
		{"read buffer 1 MiB", func(c tcpSetters) error { return c.SetReadBuffer(1 << 20) }},
		{"write buffer 8 KiB", func(c tcpSetters) error { return c.SetWriteBuffer(8 << 10) }},
		{"keepalive defaults", func(c tcpSetters) error {
			if err := c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Hour, Interval: time.Hour, Count: 2}); err != nil {
				return err
			}
			return kac(c, net.KeepAliveConfig{Enable: true})
		}},
		{"keepalive set", func(c tcpSetters) error {
			return kac(c, net.KeepAliveConfig{Enable: true, Idle: 90 * time.Second, Interval: 1500 * time.Millisecond, Count: 3})
		}},
		{"keepalive off, rest kept", func(c tcpSetters) error {
			return kac(c, net.KeepAliveConfig{Enable: false, Idle: -1, Interval: -1, Count: -1})
		}},
		{"keepalive interval only", func(c tcpSetters) error {
			return kac(c, net.KeepAliveConfig{Enable: true, Idle: -1, Interval: 7 * time.Second, Count: -1})
		}},
		{"keepalive a nanosecond", func(c tcpSetters) error {
			return kac(c, net.KeepAliveConfig{Enable: true, Idle: 1, Interval: 1, Count: 1})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			std, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer std.Close()
			wantErr := tc.set(std.(*net.TCPConn))
			want := rawMoreOpts(t, std)
			std.Close()
			wantClosed := errShape(std, tc.set(std.(*net.TCPConn)))
			for _, b := range backends {
				r := newReactor(t, b, 1)
				ours, _ := tcpPair(t, r)
				gotErr := tc.set(ours.(*reactor.NetConn))
				if (gotErr == nil) != (wantErr == nil) {
					t.Errorf("%s: error %v, net's %v", name(b), gotErr, wantErr)
				}
				if got := rawMoreOpts(t, ours); got != want {
					t.Errorf("%s: options %+v, net leaves %+v", name(b), got, want)
				}
				ours.Close()
				err := tc.set(ours.(*reactor.NetConn))
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("%s: after Close: %v, want net.ErrClosed", name(b), err)
				}
				if got := errShape(ours, err); got != wantClosed {
					t.Errorf("%s: after Close: error %q, net's is %q", name(b), got, wantClosed)
				}
			}
		})
	}
}

// errShape is an OpError of c's as its text would be with c's addresses
// named by role, so that two conns' errors compare.
func errShape(c net.Conn, err error) string {
	var oe *net.OpError
	if !errors.As(err, &oe) {
		return fmt.Sprintf("not an OpError: %v", err)
	}
	role := func(a net.Addr) string {
		switch {
		case a == nil:
			return "-"
		case a.String() == c.LocalAddr().String():
			return "local"
		case a.String() == c.RemoteAddr().String():
			return "remote"
		}
		return "other"
	}
	return fmt.Sprintf("%s %s source %s addr %s: %v", oe.Op, oe.Net, role(oe.Source), role(oe.Addr), oe.Err)
}

// TestNetConnTCPSettersOnUnix: the TCP-only setters fail on a Unix-socket
// NetConn and leave its options as they were.
func TestNetConnTCPSettersOnUnix(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			c, s, err := netPair(r, netListen(t, r, "unix"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			defer c.Close()
			nc := c.(*reactor.NetConn)
			rc, _ := nc.SyscallConn()
			keepalive := func() (v int) {
				rc.Control(func(fd uintptr) { v, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE) })
				return v
			}
			before := keepalive()
			for what, err := range map[string]error{
				"SetKeepAliveConfig": nc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: before == 0}),
				"SetLinger":          nc.SetLinger(3),
			} {
				if !errors.Is(err, unix.EOPNOTSUPP) {
					t.Errorf("%s on a Unix socket: %v, want EOPNOTSUPP", what, err)
				}
			}
			if got := keepalive(); got != before {
				t.Errorf("SO_KEEPALIVE %d after the refused SetKeepAliveConfig, was %d", got, before)
			}
			if err := nc.SetReadBuffer(64 << 10); err != nil {
				t.Errorf("SetReadBuffer on a Unix socket: %v", err)
			}
		})
	}
}
