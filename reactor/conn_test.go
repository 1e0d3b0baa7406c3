package reactor_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/reactor"
)

// echo is the simplest Handler: it writes back what it reads.
type echo struct{ closed chan error }

func (e *echo) OnOpen(*reactor.Conn)             {}
func (e *echo) OnData(c *reactor.Conn, b []byte) { c.Write(b) }
func (e *echo) OnClose(_ *reactor.Conn, err error) {
	if e.closed != nil {
		e.closed <- err
	}
}

func TestEcho(t *testing.T) {
	for _, b := range backends {
		for _, network := range []string{"tcp", "tcp6", "unix", "tcp+reuseport"} {
			t.Run(name(b)+"/"+network, func(t *testing.T) {
				cfg := reactor.ListenConfig{}
				if network == "tcp+reuseport" {
					network, cfg.ReusePort = "tcp", true
				}
				r := newReactor(t, b, 2)
				addr := "127.0.0.1:0"
				switch network {
				case "tcp6":
					addr = "[::1]:0"
				case "unix":
					addr = t.TempDir() + "/echo.sock"
				}
				h := &echo{closed: make(chan error, 4)}
				ln, err := r.Listen(network, addr, h, cfg)
				if err != nil {
					t.Skipf("listen %s %s: %v", network, addr, err)
				}
				defer ln.Close()
				for i := 0; i < 3; i++ {
					c, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
					if err != nil {
						t.Fatal(err)
					}
					msg := bytes.Repeat([]byte("hello "), 10000)
					go c.Write(msg)
					got := make([]byte, len(msg))
					c.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err := io.ReadFull(c, got); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, msg) {
						t.Fatal("echo mismatch")
					}
					c.(interface{ CloseWrite() error }).CloseWrite()
					if n, err := c.Read(got[:1]); err != io.EOF {
						t.Fatalf("after half-close read = %d, %v; want EOF", n, err)
					}
					if err := <-h.closed; err != nil {
						t.Fatalf("OnClose err = %v, want nil", err)
					}
					c.Close()
				}
				if s := ln.Stats(); s.Accepted != 3 || s.Closed != 3 || s.Active != 0 {
					t.Fatalf("stats %+v", s)
				}
			})
		}
	}
}
