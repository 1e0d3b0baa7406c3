//go:build linux

package reactor

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// stampWatch reports, from OnData, the stamps its Conn holds by then.
type stampWatch struct {
	opened chan *Conn
	stamps chan [2]int64 // lastRead, lastActive
}

func (h *stampWatch) OnOpen(c *Conn) { h.opened <- c }
func (h *stampWatch) OnData(c *Conn, b []byte) {
	h.stamps <- [2]int64{c.lastRead, c.lastActive.Load()}
	c.Write(b)
}
func (h *stampWatch) OnClose(*Conn, error) {}

// TestConnStampsNeverEarly: the times a Conn records for the bytes it
// reads and sends, from which its idle and read deadlines count, are never
// earlier than the bytes (loop.now): a clock read before the peer wrote,
// a loop's clock left from its last turn before it slept, would make an
// idle connection's deadline fire before its time. Each round's peer
// writes only after the loop has served the round before, so a stale
// clock is older than the round's start.
func TestConnStampsNeverEarly(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"uring", Config{Backend: BackendUring}},
		{"uring-kernelwait", Config{Backend: BackendUring, KernelWait: true}},
		{"epoll", Config{Backend: BackendEpoll}},
		{"epoll-kernelwait", Config{Backend: BackendEpoll, KernelWait: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Loops = 1
			r := reactorWith(t, cfg)
			l := r.loops[0]
			l.sendBatch.Store(0) // the echo goes through the ring: sendEnded stamps
			h := &stampWatch{opened: make(chan *Conn, 1), stamps: make(chan [2]int64, 1)}
			// A ReadTimeout, so that lastRead is kept.
			_, peer := listenDialWith(t, r, h, ListenConfig{ReadTimeout: time.Hour})
			peer.SetDeadline(time.Now().Add(10 * time.Second))
			c := <-h.opened
			buf := make([]byte, 64)
			for round := range 5 {
				start := nanotime()
				if _, err := peer.Write(buf); err != nil {
					t.Fatal(err)
				}
				got := <-h.stamps
				if got[0] < start || got[1] < start {
					t.Fatalf("round %d: lastRead %d, lastActive %d ns after the clock's origin, earlier than the write at %d",
						round, got[0], got[1], start)
				}
				if _, err := io.ReadFull(peer, buf); err != nil {
					t.Fatal(err)
				}
				// The echo's bytes left by the time the peer read them:
				// a send's stamp comes no earlier than the round began.
				var active int64
				onLoop(t, l, func(*loop) { active = c.lastActive.Load() })
				if active < start {
					t.Fatalf("round %d: lastActive %d after the echo, earlier than the write at %d", round, active, start)
				}
			}
		})
	}
}

// crossWriter's first OnData, slow, writes to the other Conn: a direct
// Write stamps that Conn with the clock itself, later in the turn than
// the turn's clock, before that Conn's own receive of the same batch is
// delivered.
type crossWriter struct {
	opened chan *Conn
	closed chan *Conn
	mu     sync.Mutex
	conns  []*Conn
	target *Conn
	before int64 // the clock just before the cross Write
	wrote  bool
}

func (h *crossWriter) OnOpen(c *Conn) {
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
	h.opened <- c
}

func (h *crossWriter) OnData(c *Conn, _ []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wrote {
		return
	}
	h.wrote = true
	for _, o := range h.conns {
		if o != c {
			h.target = o
		}
	}
	time.Sleep(100 * time.Millisecond) // a slow handler, early in the turn
	h.before = nanotime()
	h.target.Write([]byte("y"))
}

func (h *crossWriter) OnClose(c *Conn, _ error) { h.closed <- c }

// TestStampsOnlyMoveForward: a turn's clock is older than a stamp a
// direct Write took from the clock itself earlier in the same turn, and
// must not replace it. Two Conns' bytes arrive in one batch; the first's
// handler runs 100 ms, then writes to the second, whose own bytes are
// delivered after. With IdleTimeout 150 ms the second must not close
// within 150 ms of that write: taking the turn's clock over the Write's
// closed it after 50.
func TestStampsOnlyMoveForward(t *testing.T) {
	for _, b := range []Backend{BackendUring, BackendEpoll} {
		t.Run(string(b), func(t *testing.T) {
			r := oneLoopReactor(t, b)
			l := r.loops[0]
			h := &crossWriter{opened: make(chan *Conn, 2), closed: make(chan *Conn, 2)}
			const idle = 150 * time.Millisecond
			ln, first := listenDialWith(t, r, h, ListenConfig{IdleTimeout: idle})
			second, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer second.Close()
			<-h.opened
			<-h.opened
			// Hold the loop while both peers write: loopback has put the
			// bytes in the sockets when Write returns, so the loop's next
			// turn finds both.
			g := newGate()
			if !l.postTask(g, 0) {
				t.Fatal("the loop stopped")
			}
			<-g.entered
			for _, p := range []net.Conn{first, second} {
				if _, err := p.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			close(g.release)
			timeout := time.After(10 * time.Second)
			for {
				select {
				case c := <-h.closed:
					at := nanotime()
					h.mu.Lock()
					target, before := h.target, h.before
					h.mu.Unlock()
					if c != target {
						continue // the first Conn, idle-closed in its time
					}
					if gap := time.Duration(at - before); gap < idle {
						t.Fatalf("closed %v after the last byte written to it, IdleTimeout %v", gap, idle)
					}
					return
				case <-timeout:
					t.Fatal("the written-to Conn was never idle-closed")
				}
			}
		})
	}
}
