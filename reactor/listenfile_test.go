package reactor_test

import (
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// inheritedListener returns a listening TCP socket as a file the test
// holds, as a process holds one it inherited, closed at cleanup, and its
// address.
func inheritedListener(t *testing.T) (*os.File, net.Addr) {
	t.Helper()
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := gl.(*net.TCPListener).File()
	gl.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, gl.Addr()
}

// TestListenFile serves a listening socket the process already holds (as
// systemd passes one under socket activation) with the callback API: the
// echo works, f stays the caller's, and a file that is not a listening
// stream socket is refused with an error, nothing served.
func TestListenFile(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			f, addr := inheritedListener(t)
			ln, err := r.ListenFile(f, &echo{}, reactor.ListenConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if ln.Addr().String() != addr.String() {
				t.Fatalf("Addr() = %v, want the inherited socket's %v", ln.Addr(), addr)
			}
			c := dial(t, ln)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte("inherited")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 9)
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "inherited" {
				t.Fatalf("echo %q, %v", got, err)
			}
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Stat(); err != nil {
				t.Fatalf("the caller's file was closed with the Listener: %v", err)
			}

			other, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			conn, err := net.Dial("tcp", other.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cf, err := conn.(*net.TCPConn).File() // connected, not listening
			if err != nil {
				t.Fatal(err)
			}
			defer cf.Close()
			tf, err := os.CreateTemp(t.TempDir(), "x") // not a socket
			if err != nil {
				t.Fatal(err)
			}
			defer tf.Close()
			for _, bad := range []*os.File{cf, tf, nil} {
				if l, err := r.ListenFile(bad, &echo{}, reactor.ListenConfig{}); err == nil {
					l.Close()
					t.Fatalf("ListenFile(%v) served a file that is not a listening socket", bad)
				}
			}
		})
	}
}

// TestListenerStopsWhenItsSocketBreaks: a listening socket shut down
// through another descriptor of it (here the caller's file) can never
// accept again and polls readable for good. The listener stops serving it
// after the first failed accept, through the ring as after polls, instead
// of trying again forever (after polls: at once, a spinning loop); a Conn
// it opened before is served as before, and Close still succeeds.
func TestListenerStopsWhenItsSocketBreaks(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			f, _ := inheritedListener(t)
			ln, err := r.ListenFile(f, &echo{}, reactor.ListenConfig{})
			if err != nil {
				t.Fatal(err)
			}
			c := dial(t, ln)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			echoOnce := func(msg string) {
				t.Helper()
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
					t.Fatalf("echo %q, %v", got, err)
				}
			}
			echoOnce("before")
			if err := unix.Shutdown(int(f.Fd()), unix.SHUT_RD); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the listener to stop serving its broken socket", func() bool { return reactor.ListenerStopped(ln) })
			if n := ln.Stats().AcceptErrors; n != 1 {
				t.Errorf("AcceptErrors = %d, want the one that stopped it", n)
			}
			echoOnce("after")
			if err := ln.Close(); err != nil {
				t.Fatalf("Close after the socket broke: %v", err)
			}
		})
	}
}
