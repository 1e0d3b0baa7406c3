package reactor_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// TestNetConnWriteDoneIsSuccess: a Write that wrote all of p returns no
// error, as internal/poll's: a deadline that passes, or a Close that
// comes, while its last bytes go out fails the next Write, not this one
// (crypto/tls and bufio keep a write error for good). A writer of 1-byte
// Writes races SetWriteDeadline in the past, or Close, in each trial; the
// Write that fails must be one that wrote nothing. Randomized: against the
// old loop, which looked at the deadline again before returning, one of
// the first few trials failed on every row.
func TestNetConnWriteDoneIsSuccess(t *testing.T) {
	const trials = 100
	for _, b := range backends {
		for _, how := range []string{"deadline", "close"} {
			t.Run(name(b)+"/"+how, func(t *testing.T) {
				r := newReactor(t, b, 2)
				ln := netListen(t, r, "tcp")
				for i := range trials {
					c, peer, err := netPair(r, ln)
					if err != nil {
						t.Fatal(err)
					}
					go io.Copy(io.Discard, peer)
					type res struct {
						n   int
						err error
					}
					out := make(chan res, 1)
					wrote := make(chan struct{})
					go func() {
						for first := true; ; first = false {
							n, err := c.Write([]byte("x"))
							if first {
								close(wrote)
							}
							if err != nil {
								out <- res{n, err}
								return
							}
						}
					}()
					<-wrote // the writer is in its loop of Writes
					if how == "deadline" {
						c.SetWriteDeadline(time.Now().Add(-time.Second))
					} else {
						c.Close()
					}
					got := <-out
					c.Close()
					peer.Close()
					if got.n != 0 {
						t.Fatalf("trial %d: Write wrote %d of 1 byte and returned %v", i, got.n, got.err)
					}
				}
			})
		}
	}
}

// TestNetConnCloseClosesFd: Close returns with the descriptor closed, as
// net's Close does when no call is in flight (the doc says so), not once
// the loop gets to it.
func TestNetConnCloseClosesFd(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			for i := range 20 {
				c, peer := tcpPair(t, r)
				if _, err := c.Write([]byte("x")); err != nil { // polled: the loop knows the fd
					t.Fatal(err)
				}
				if _, err := io.ReadFull(peer, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				var fd int
				rc, err := c.(syscall.Conn).SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				rc.Control(func(f uintptr) { fd = int(f) })
				var own string // its entry, "N socket:[inode]"
				for k := range openFdSet(t) {
					if strings.HasPrefix(k, itoa(fd)+" ") {
						own = k
					}
				}
				c.Close()
				if own == "" || openFdSet(t)[own] {
					t.Fatalf("round %d: fd %d (%q) still open after Close returned", i, fd, own)
				}
			}
		})
	}
}

// TestDialDoneContext: a context already done dials nothing, as with
// net.Dialer, even on a Unix socket, whose connect completes at once.
func TestDialDoneContext(t *testing.T) {
	for _, b := range backends {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(name(b)+"/"+network, func(t *testing.T) {
				r := newReactor(t, b, 1)
				ln := netListen(t, r, network)
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				c, err := r.DialContext(ctx, network, ln.Addr().String())
				if err == nil {
					c.Close()
					t.Fatalf("DialContext with a canceled context connected")
				}
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("DialContext with a canceled context: %v, want context.Canceled in its chain", err)
				}
			})
		}
	}
}

// TestNetConnReadAfterReactorClose: bytes in the socket when the reactor
// closes are still returned by Read, then its error, on either backend:
// through the ring the Read goes to the socket when it cannot receive.
func TestNetConnReadAfterReactorClose(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			c, peer := tcpPair(t, r)
			// A Read that finds nothing: the next parks on a receive
			// where the loop receives through the ring.
			c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
			if _, err := c.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("first Read: %v, want the deadline's error", err)
			}
			c.SetReadDeadline(time.Time{})
			if _, err := peer.Write([]byte("data")); err != nil {
				t.Fatal(err)
			}
			rc, err := c.(*reactor.NetConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "the bytes in the socket", func() bool {
				n := 0
				rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
				return n == 4
			})
			r.Close()
			buf := make([]byte, 8)
			if n, err := c.Read(buf); n != 4 || err != nil {
				t.Fatalf("Read after the reactor closed, 4 bytes in the socket: %d, %v", n, err)
			}
			if _, err := c.Read(buf); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("the next Read: %v, want an error wrapping net.ErrClosed", err)
			}
		})
	}
}

// TestNetListenerFileAndSyscallConn: File and SyscallConn as on
// net.TCPListener (and File on net.TCPConn): the copy is the same
// listening socket and takes what peers dial while the original does not
// accept (a graceful restart's hand-over), closing it leaves the original
// listening, and the original's Close, with an Accept parked, leaves the
// copy listening, as net's does; Control reaches the socket.
func TestNetListenerFileAndSyscallConn(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			ln := netListen(t, r, "tcp").(*reactor.NetListener)
			rc, err := ln.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			listening := 0
			if err := rc.Control(func(fd uintptr) { listening, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN) }); err != nil || listening != 1 {
				t.Fatalf("Control: SO_ACCEPTCONN %d, %v; want a listening socket", listening, err)
			}
			f, err := ln.File()
			if err != nil {
				t.Fatal(err)
			}
			// Closing the copy leaves the original listening.
			f2, err := ln.File()
			if err != nil {
				t.Fatal(err)
			}
			f2.Close()
			c, s, err := netPair(r, ln)
			if err != nil {
				t.Fatalf("the original after its copy closed: %v", err)
			}
			c.Close()
			s.Close()
			// The hand-over: the original accepts no more, the copy does.
			addr := ln.Addr().String()
			heir, err := net.FileListener(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			defer heir.Close()
			d, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("dial after the hand-over: %v", err)
			}
			defer d.Close()
			a, err := heir.Accept()
			if err != nil {
				t.Fatal(err)
			}
			a.Close()
			// The original closes (with an Accept parked on it, whose
			// poll the kernel holds) and the copy listens on, as with
			// net: dials reach the heir.
			parked := parkAccept(t, r, ln)
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-parked; !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept parked across Close: %v, want net.ErrClosed", err)
			}
			for range 3 {
				heirTakes(t, heir, "tcp", addr)
			}
			heir.Close()
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Fatal("a dial succeeded after both closed: the socket still listens")
			}
			// A NetConn's File is a copy of its socket too.
			c2, s2 := tcpPair(t, r)
			cf, err := c2.(*reactor.NetConn).File()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cf.Write([]byte("x")); err != nil {
				t.Fatalf("write through the File copy: %v", err)
			}
			cf.Close()
			buf := make([]byte, 1)
			if _, err := io.ReadFull(s2, buf); err != nil || buf[0] != 'x' {
				t.Fatalf("read what the copy wrote: %q, %v", buf, err)
			}
		})
	}
}

// TestNetListenerUnixHandOver: a Unix listener handed on through File,
// with SetUnlinkOnClose(false), keeps its path when the original closes
// (Accept parked on it), and peers dialing the path reach the copy; by
// default Close removes the path, as net's UnixListener does.
func TestNetListenerUnixHandOver(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			for _, keep := range []bool{false, true} {
				ln := netListen(t, r, "unix").(*reactor.NetListener)
				path := ln.Addr().String()
				f, err := ln.File()
				if err != nil {
					t.Fatal(err)
				}
				heir, err := net.FileListener(f)
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				if keep {
					ln.SetUnlinkOnClose(false)
				}
				parked := parkAccept(t, r, ln)
				if err := ln.Close(); err != nil {
					t.Fatal(err)
				}
				if err := <-parked; !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Accept parked across Close: %v, want net.ErrClosed", err)
				}
				_, statErr := os.Stat(path)
				if keep != (statErr == nil) {
					t.Fatalf("keep path %v: after Close, stat %s: %v", keep, path, statErr)
				}
				if keep {
					heirTakes(t, heir, "unix", path)
				}
				heir.Close()
				os.Remove(path)
			}
		})
	}
}

// heirTakes proves that heir, a listener handed on, takes a dial to
// addr after the original closed.
func heirTakes(t *testing.T, heir net.Listener, network, addr string) {
	t.Helper()
	d, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s after the original's Close: %v; the copy must listen on", addr, err)
	}
	defer d.Close()
	a, err := heir.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
}
