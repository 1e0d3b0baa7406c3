package reactor_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/reactor"
)

// TestNetListenerStats: a NetListener counts its accepted NetConns from
// Accept to Close, its own Close notwithstanding, and the bytes their
// Reads, Writes and ReadFroms (sendfile) moved, exactly; an Accept that
// fails by the listener's own deadline is no accept error, and a dialed
// NetConn counts nowhere.
func TestNetListenerStats(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			ln := tcpNetListener(t, r)
			want := reactor.ListenerStats{}
			check := func(step string) {
				t.Helper()
				if got := ln.Stats(); got != want {
					t.Fatalf("%s: Stats = %+v, want %+v", step, got, want)
				}
			}
			check("new")

			ln.SetDeadline(time.Now().Add(time.Millisecond))
			if _, err := ln.Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Accept past its deadline: %v", err)
			}
			ln.SetDeadline(time.Time{})
			check("after the deadline") // not an accept error

			var clients [3]net.Conn
			var servers [3]*reactor.NetConn
			for i := range clients {
				clients[i], servers[i] = acceptNet(t, ln)
				defer servers[i].Close()
			}
			want.Accepted, want.Active = 3, 3
			check("three accepted")

			// Reads, Writes and a ReadFrom through sendfile.
			if _, err := clients[0].Write(make([]byte, 100)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(servers[0], make([]byte, 100)); err != nil {
				t.Fatal(err)
			}
			if _, err := servers[0].Write(make([]byte, 250)); err != nil {
				t.Fatal(err)
			}
			f, err := os.CreateTemp(t.TempDir(), "stats")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(bytes.Repeat([]byte("x"), 1000)); err != nil {
				t.Fatal(err)
			}
			f.Seek(0, io.SeekStart)
			if n, err := servers[1].ReadFrom(f); n != 1000 || err != nil {
				t.Fatalf("ReadFrom(file) = %d, %v", n, err)
			}
			for i, n := range []int{250, 1000} {
				if _, err := io.ReadFull(clients[i], make([]byte, n)); err != nil {
					t.Fatal(err)
				}
			}
			want.BytesIn, want.BytesOut = 100, 1250
			check("after the I/O")

			// A closed NetConn's bytes stay counted.
			if err := servers[0].Close(); err != nil {
				t.Fatal(err)
			}
			want.Active, want.Closed = 2, 1
			check("one closed")
			servers[0].Close() // a second Close counts nothing
			check("closed twice")

			// The listener closes; its NetConns still count for it.
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := servers[2].Write(make([]byte, 7)); err != nil {
				t.Fatal(err)
			}
			servers[1].Close()
			servers[2].Close()
			want.Active, want.Closed, want.BytesOut = 0, 3, 1257
			check("listener and all closed")
			if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept after Close: %v", err)
			}
			check("Accept after Close") // not an accept error

			// A dialed NetConn belongs to no listener.
			other, err := r.NetListenWith("tcp", "127.0.0.1:0", reactor.NetConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d, err := r.DialContext(ctx, "tcp", other.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			d.Write([]byte("hi"))
			d.Close()
			check("after a dialed NetConn")
		})
	}
}

// TestNetListenerStatsAtClose: the bytes of a Write that Close ends, and
// of a NetConn a splice reads (a proxy's io.Copy(upstream, accepted)),
// count for the listener: each counts before the operation lets the
// NetConn go, so a close that retires it cannot drop them.
func TestNetListenerStatsAtClose(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			ln := tcpNetListener(t, r)
			_, s := acceptNet(t, ln) // a peer that reads nothing
			wrote := make(chan int, 1)
			go func() {
				n, _ := s.Write(make([]byte, 64<<20))
				wrote <- n
			}()
			waitFor(t, 10*time.Second, "the Write parked on a full socket", func() bool { return r.Stats().Outstanding == 1 })
			s.Close()
			n := <-wrote
			if st := ln.Stats(); n <= 0 || st.BytesOut != uint64(n) || st.Closed != 1 {
				t.Fatalf("a Write that Close ended wrote %d; Stats %+v, want BytesOut %d and one closed", n, st, n)
			}

			client, s2 := acceptNet(t, ln)
			up, upPeer := tcpPair(t, r) // a NetConn destination: ReadFrom splices
			go io.Copy(io.Discard, upPeer)
			client.Write(make([]byte, 1000))
			client.(*net.TCPConn).CloseWrite()
			if n, err := io.Copy(up, s2); n != 1000 || err != nil {
				t.Fatalf("io.Copy(NetConn, accepted NetConn) = %d, %v", n, err)
			}
			s2.Close()
			if st := ln.Stats(); st.BytesIn != 1000 || st.Closed != 2 {
				t.Fatalf("after a splice read 1000 bytes of an accepted NetConn: Stats %+v, want BytesIn 1000", st)
			}
		})
	}
}

// tcpNetListener is NetListenWith on a loopback TCP port, closed at
// cleanup.
func tcpNetListener(t *testing.T, r *reactor.Reactor) *reactor.NetListener {
	t.Helper()
	ln, err := r.NetListenWith("tcp", "127.0.0.1:0", reactor.NetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// acceptNet dials ln with net and accepts: the client, closed at cleanup,
// and the accepted NetConn, the caller's to close (or to drop).
func acceptNet(t *testing.T, ln *reactor.NetListener) (net.Conn, *reactor.NetConn) {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	s, err := ln.AcceptNet()
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}
