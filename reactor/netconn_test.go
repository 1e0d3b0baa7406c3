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

	"golang.org/x/net/nettest"
	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// netListen is NetListen on a loopback address of network, closed at
// cleanup.
func netListen(t testing.TB, r *reactor.Reactor, network string) net.Listener {
	t.Helper()
	addr := "127.0.0.1:0"
	switch network {
	case "tcp6":
		addr = "[::1]:0"
	case "unix":
		addr = t.TempDir() + "/net.sock"
	}
	ln, err := r.NetListen(network, addr)
	switch {
	case err != nil && network == "tcp6":
		t.Skipf("no IPv6 loopback here: NetListen(%s, %s): %v", network, addr, err)
	case err != nil:
		t.Fatalf("NetListen(%s, %s): %v", network, addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// tcpPair is netPair over a fresh tcp NetListen; both ends are closed at
// cleanup, before the reactor (a test may close them first).
func tcpPair(t testing.TB, r *reactor.Reactor) (client, server net.Conn) {
	t.Helper()
	c, s, err := netPair(r, netListen(t, r, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// netPair dials ln with r.DialContext and accepts the other end: both are
// NetConns on r. The caller closes them.
func netPair(r *reactor.Reactor, ln net.Listener) (client, server net.Conn, err error) {
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err = r.DialContext(ctx, ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		ln.Close() // ends the Accept
		<-ch
		return nil, nil, err
	}
	a := <-ch
	if a.err != nil {
		client.Close()
		return nil, nil, a.err
	}
	return client, a.c, nil
}

var netNetworks = []string{"tcp", "tcp6", "unix"}

// TestNettestConn runs x/net's conformance suite for net.Conn (I/O,
// concurrent reads and writes, deadlines past, present and future, Close
// unblocking) on NetListen + DialContext pairs.
func TestNettestConn(t *testing.T) {
	for _, b := range backends {
		for _, network := range netNetworks {
			t.Run(name(b)+"/"+network, func(t *testing.T) {
				r := newReactor(t, b, 2)
				ln := netListen(t, r, network)
				nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
					c1, c2, err = netPair(r, ln)
					if err != nil {
						return nil, nil, nil, err
					}
					return c1, c2, func() { c1.Close(); c2.Close() }, nil
				})
			})
		}
	}
}

// TestNetConnClose: Close ends a Read and a Write parked on the reactor
// with errors wrapping net.ErrClosed; later calls fail the same way and a
// second Close reports it.
func TestNetConnClose(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			c, peer := tcpPair(t, r)
			readErr := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 16))
				readErr <- err
			}()
			writeErr := make(chan error, 1)
			go func() {
				buf := make([]byte, 1<<16)
				for {
					if _, err := c.Write(buf); err != nil {
						writeErr <- err
						return
					}
				}
			}()
			// Both park: the peer neither writes nor reads.
			waitFor(t, 10*time.Second, "Read and Write parked", func() bool { return r.Stats().Outstanding == 2 })
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			for what, ch := range map[string]chan error{"Read": readErr, "Write": writeErr} {
				select {
				case err := <-ch:
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("%s after Close: %v, want net.ErrClosed", what, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s still parked 10s after Close", what)
				}
			}
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Read after Close: %v", err)
			}
			if err := c.SetDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
				t.Errorf("SetDeadline after Close: %v", err)
			}
			if err := c.Close(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("second Close: %v, want net.ErrClosed", err)
			}
			// The peer sees the close: the fd really was closed.
			peer.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, peer); err != nil {
				t.Errorf("peer after Close: %v, want EOF", err)
			}
		})
	}
}

// TestNetConnDeadlineMovesParkedRead: a deadline set while a Read is
// parked takes effect, whether it shortens from none, or moves an hour
// away to the past; clearing it after a timeout re-enables reads.
func TestNetConnDeadlineMovesParkedRead(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			c, peer := tcpPair(t, r)
			for _, tc := range []struct {
				name   string
				before time.Time // deadline set before the Read
				after  func() time.Time
			}{
				{"none to soon", time.Time{}, func() time.Time { return time.Now().Add(20 * time.Millisecond) }},
				{"hour to past", time.Now().Add(time.Hour), func() time.Time { return time.Now().Add(-time.Second) }},
				{"hour to soon", time.Now().Add(time.Hour), func() time.Time { return time.Now().Add(20 * time.Millisecond) }},
			} {
				c.SetReadDeadline(tc.before)
				done := make(chan error, 1)
				go func() {
					_, err := c.Read(make([]byte, 1))
					done <- err
				}()
				waitFor(t, 10*time.Second, "Read parked", func() bool { return r.Stats().Outstanding == 1 })
				c.SetReadDeadline(tc.after())
				select {
				case err := <-done:
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Fatalf("%s: Read = %v, want a timeout", tc.name, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s: Read still parked 10s after its deadline moved", tc.name)
				}
			}
			c.SetReadDeadline(time.Time{})
			go peer.Write([]byte("x"))
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatalf("Read after clearing the deadline: %v", err)
			}
		})
	}
}

// TestNetListenerClose: Close ends a parked Accept with net.ErrClosed, and
// Accept's deadline times it out.
func TestNetListenerClose(t *testing.T) {
	for _, b := range backends {
		for _, network := range netNetworks {
			t.Run(name(b)+"/"+network, func(t *testing.T) {
				r := newReactor(t, b, 2)
				ln := netListen(t, r, network)
				dl := ln.(interface{ SetDeadline(time.Time) error })
				dl.SetDeadline(time.Now().Add(20 * time.Millisecond))
				if _, err := ln.Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("Accept past its deadline: %v", err)
				}
				dl.SetDeadline(time.Time{})
				done := make(chan error, 1)
				go func() {
					_, err := ln.Accept()
					done <- err
				}()
				waitFor(t, 10*time.Second, "Accept parked", func() bool { return r.Stats().Outstanding == 1 })
				if err := ln.Close(); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-done:
					if !errors.Is(err, net.ErrClosed) {
						t.Fatalf("Accept after Close: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Accept still parked 10s after Close")
				}
				if network == "unix" {
					if _, err := os.Stat(ln.Addr().String()); !os.IsNotExist(err) {
						t.Errorf("socket file after Close: %v, want removed", err)
					}
				}
			})
		}
	}
}

// TestNetConnReactorClose: a Read parked when the reactor closes returns an
// error wrapping both net.ErrClosed and reactor.ErrClosed, the conn still
// closes without leaking its fd, and new listeners and dials are refused.
func TestNetConnReactorClose(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			ln := netListen(t, r, "tcp")
			c, peer, err := netPair(r, ln)
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			fds := openFds(t)
			done := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 1))
				done <- err
			}()
			waitFor(t, 10*time.Second, "Read parked", func() bool { return r.Stats().Outstanding == 1 })
			r.Close()
			err = <-done
			if !errors.Is(err, net.ErrClosed) || !errors.Is(err, reactor.ErrClosed) {
				t.Fatalf("Read as the reactor closed: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := r.NetListen("tcp", "127.0.0.1:0"); !errors.Is(err, reactor.ErrClosed) {
				t.Errorf("NetListen after Close: %v, want ErrClosed", err)
			}
			if _, err := r.DialContext(context.Background(), "tcp", ln.Addr().String()); !errors.Is(err, reactor.ErrClosed) {
				t.Errorf("DialContext after Close: %v, want ErrClosed", err)
			}
			// The reactor's own fds are gone too; ours must be.
			if n := openFds(t); n >= fds {
				t.Fatalf("open fds %d after closing, %d before: the conn's fd leaked", n, fds)
			}
		})
	}
}

// TestNetConnCloseWaitsForInFlightSyscall: a syscall running on the fd
// (here a SyscallConn Write callback, held inside on purpose) keeps the
// fd's number open across Close, so it cannot reach a new socket that
// reuses the number; Close returns, and the fd is closed, only after it.
func TestNetConnCloseWaitsForInFlightSyscall(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			c, _ := tcpPair(t, r)
			rc, err := c.(syscall.Conn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			entered, release := make(chan int), make(chan struct{})
			inFlight := make(chan error, 1)
			go func() {
				inFlight <- rc.Write(func(fd uintptr) bool {
					entered <- int(fd)
					<-release
					return true
				})
			}()
			fd := <-entered
			var before unix.Stat_t
			if err := unix.Fstat(fd, &before); err != nil {
				t.Fatal(err)
			}
			closed := make(chan error, 1)
			go func() { closed <- c.Close() }()
			waitFor(t, 10*time.Second, "Close marked the conn closed", func() bool {
				_, err := c.Read(nil)
				return errors.Is(err, net.ErrClosed)
			})
			// Closed to callers, but the number is still this socket's:
			// new descriptors cannot take it.
			for i := 0; i < 4; i++ {
				a, p := pair(t)
				if a == fd || p == fd {
					t.Fatalf("a new socket got fd %d while a syscall on the closed conn still ran", fd)
				}
			}
			var during unix.Stat_t
			if err := unix.Fstat(fd, &during); err != nil || during.Ino != before.Ino {
				t.Fatalf("fd %d under an in-flight syscall: %v (inode %d, was %d)", fd, err, during.Ino, before.Ino)
			}
			select {
			case err := <-closed:
				t.Fatalf("Close returned (%v) while a syscall still held the fd", err)
			default:
			}
			close(release)
			if err := <-inFlight; err != nil {
				t.Fatalf("the in-flight Write: %v", err)
			}
			if err := <-closed; err != nil {
				t.Fatalf("Close: %v", err)
			}
			waitFor(t, 10*time.Second, "the fd closed after the last syscall", func() bool {
				var st unix.Stat_t
				return unix.Fstat(fd, &st) != nil || st.Ino != before.Ino
			})
		})
	}
}

// TestNetListenerCloseFreesPort: when Close returns, with an Accept parked,
// the port is free to bind again at once, as with net's listeners.
func TestNetListenerCloseFreesPort(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			ln, err := r.NetListen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := ln.Accept()
				done <- err
			}()
			waitFor(t, 10*time.Second, "Accept parked", func() bool { return r.Stats().Outstanding == 1 })
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			again, err := net.Listen("tcp", ln.Addr().String())
			if err != nil {
				t.Fatalf("binding the port right after Close: %v", err)
			}
			again.Close()
			if err := <-done; !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept: %v", err)
			}
		})
	}
}
