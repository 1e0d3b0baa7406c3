//go:build linux

package reactor

import (
	"io"
	"net"
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
			h := &stampWatch{opened: make(chan *Conn, 1), stamps: make(chan [2]int64, 1)}
			ln, err := r.Listen("tcp", "127.0.0.1:0", h, ListenConfig{})
			if err != nil {
				t.Fatal(err)
			}
			peer, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
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
