package reactor_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/reactor"
)

// proxy is a callback server that forwards each accepted Conn to an
// upstream through a Conn of its own from Reactor.Dial: the proxy case.
// Dial blocks, so it runs on a goroutine of its own; what the client sends
// before the upstream is up waits in the pair's state.
type proxy struct {
	r        *reactor.Reactor
	upstream string
	closed   chan error // each Conn's OnClose, both sides
}

type pairState struct {
	mu      sync.Mutex
	up      *reactor.Conn
	pending []byte
	done    bool // the client side closed before the upstream was up
}

type upstreamSide struct {
	down   *reactor.Conn
	closed chan error
}

func (u *upstreamSide) OnOpen(*reactor.Conn)               {}
func (u *upstreamSide) OnData(_ *reactor.Conn, b []byte)   { u.down.Write(b) }
func (u *upstreamSide) OnClose(_ *reactor.Conn, err error) { u.down.Close(); u.closed <- err }

func (p *proxy) OnOpen(c *reactor.Conn) {
	st := &pairState{}
	c.SetContext(st)
	go func() {
		up, err := p.r.Dial(context.Background(), "tcp", p.upstream, &upstreamSide{down: c, closed: p.closed}, reactor.ListenConfig{})
		st.mu.Lock()
		defer st.mu.Unlock()
		if err != nil {
			c.CloseNow()
			return
		}
		st.up = up
		if st.done {
			up.Close()
			return
		}
		up.Write(st.pending)
		st.pending = nil
	}()
}

func (p *proxy) OnData(c *reactor.Conn, b []byte) {
	st := c.Context().(*pairState)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.up == nil {
		st.pending = append(st.pending, b...)
		return
	}
	st.up.Write(b)
}

func (p *proxy) OnClose(c *reactor.Conn, err error) {
	st := c.Context().(*pairState)
	st.mu.Lock()
	if st.up != nil {
		st.up.Close()
	}
	st.done = true
	st.mu.Unlock()
	p.closed <- err
}

// TestDialProxy: a client's bytes go through a reactor Conn, an upstream
// Conn from Dial to a standard-library echo server, and back, byte-exact;
// when the client closes, both of the proxy's Conns close cleanly.
func TestDialProxy(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			up, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer up.Close()
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Go(func() {
				c, err := up.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				io.Copy(c, c)
			})
			r := newReactor(t, b, 2)
			p := &proxy{r: r, upstream: up.Addr().String(), closed: make(chan error, 2)}
			ln := listen(t, r, p, reactor.ListenConfig{})
			c := dial(t, ln)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			msg := make([]byte, 1<<20)
			rand.Read(msg)
			go c.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read back %v", err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatal("the proxied echo differs from what was sent")
			}
			c.Close()
			for range 2 {
				select {
				case err := <-p.closed:
					if err != nil {
						t.Errorf("OnClose(%v), want a clean close", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("a side of the proxy never closed")
				}
			}
		})
	}
}

// TestDialRefused: nothing listens, so Dial returns an error and the
// Handler is never called.
func TestDialRefused(t *testing.T) {
	r := newReactor(t, backends[0], 1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h := &closeErrs{errs: make(chan error, 1)}
	if c, err := r.Dial(context.Background(), "tcp", addr, h, reactor.ListenConfig{}); err == nil {
		t.Fatalf("Dial to a closed port gave %v", c)
	}
	if h.opens.Load() != 0 || len(h.errs) != 0 {
		t.Fatal("the Handler was called for a connection that never was")
	}
}
