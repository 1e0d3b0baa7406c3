//go:build linux

package reactor

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// bigOnShut answers OnData with 1 MiB once Shutdown has reached the Conn
// (shutReq), and with nothing before: only Shutdown's own read can pause it.
type bigOnShut struct {
	opened chan *Conn
	closed chan error
}

func (h *bigOnShut) OnOpen(c *Conn) {
	unix.SetsockoptInt(int(c.fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<10)
	h.opened <- c
}

func (h *bigOnShut) OnData(c *Conn, b []byte) {
	if c.shutAsked() {
		c.Write(make([]byte, 1<<20))
	}
}

func (h *bigOnShut) OnClose(c *Conn, err error) { h.closed <- err }

// gateThen holds the loop as gate does, then runs then in the same turn:
// before the loop looks for Events again.
type gateThen struct {
	g    gate
	then func(l *loop)
}

func (g gateThen) runTask(l *loop, a int32) {
	g.g.runTask(l, a)
	g.then(l)
}

// TestShutdownPausedByItsOwnRead: Shutdown's sweep finds a Conn open with
// bytes received and not yet served; serving them (shutdownRead) pauses it,
// and its peer never reads. CloseTimeout must bound the wait as it does for
// a Conn the sweep found paused, or Shutdown never returns. The sweep runs
// in a held turn (the gate's) once the bytes sit in the socket, so that it
// comes before the loop sees them: the order that once left the pause
// unbounded. shutdownRead reads them (readSome), the ring's receive having
// been stopped before it took them (DEFER_TASKRUN: it takes nothing while
// the loop is held). In the take row a receive's end brings them instead,
// after the sweep stopped it: the loop's own take is called with them in
// the held turn, as received calls it. The two steps of Shutdown
// before its sweep are made here as it makes them (Listener.Shutdown): it
// would wait for the held loop to close the listening socket.
func TestShutdownPausedByItsOwnRead(t *testing.T) {
	const closeTimeout = 100 * time.Millisecond
	for _, tc := range []struct {
		name string
		cfg  Config
		take bool
	}{
		{"epoll", Config{Backend: BackendEpoll}, false},
		{"epoll-kernelwait", Config{Backend: BackendEpoll, KernelWait: true}, false},
		{"uring-poll", Config{Backend: BackendUring, IO: IOPoll}, false},
		{"uring-kernelwait", Config{Backend: BackendUring, KernelWait: true}, false},
		{"uring-kernelwait-take", Config{Backend: BackendUring, KernelWait: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Loops = 1
			r := reactorWith(t, cfg)
			h := &bigOnShut{opened: make(chan *Conn, 1), closed: make(chan error, 1)}
			ln, peer := listenDialWith(t, r, h, ListenConfig{MaxPending: 4 << 10, CloseTimeout: closeTimeout})
			// The peer's receive buffer keeps its default size: see
			// TestShutdownContextEndsForceCloses.
			c := <-h.opened
			g := newGate()
			c.l.postTask(gateThen{g, func(l *loop) {
				ln.shutting.Store(true)
				ln.stopping.Store(true)
				lnSweep{ln}.runTask(l, taskShutdown)
				if tc.take {
					if !c.receiving() {
						t.Error("the sweep's stopped receive has ended before its completion came")
					}
					c.take([]byte("hello"))
				}
			}}, 0)
			<-g.entered
			if !tc.take {
				if _, err := peer.Write([]byte("hello")); err != nil {
					close(g.release)
					t.Fatal(err)
				}
				waitUntil(t, "the bytes in the server's receive queue", func() bool {
					n, _ := unix.IoctlGetInt(int(c.fd), unix.SIOCINQ)
					return n == 5
				})
			}
			start := time.Now()
			close(g.release)
			select {
			case err := <-h.closed:
				if !errors.Is(err, ErrClosed) {
					t.Fatalf("OnClose err = %v, want CloseTimeout's (wrapping ErrClosed)", err)
				}
				if d := time.Since(start); d < closeTimeout {
					t.Fatalf("closed after %v, before CloseTimeout %v", d, closeTimeout)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("5s after Shutdown's sweep (CloseTimeout %v) the Conn is still %v, Paused = %d: nothing bounds its wait",
					closeTimeout, c.phase(), ln.Stats().Paused)
			}
		})
	}
}

// TestDiscardIsBounded: a lingering Conn whose peer keeps sending reads at
// most discardRounds buffers a turn, as an open Conn reads at most a few:
// a peer that sends as fast as the loop drops once held the loop in one
// discard, its other Conns and timers (the linger bound among them)
// waiting. The peer queues more than that many buffers while the loop is
// held; the held turn then drains the Conn, which, having nothing to
// flush, lingers at once: its first discard must drop discardRounds
// buffers, no more. Then, as at EAGAIN, it closes if the peer has
// acknowledged all its output (a reset, costing the peer none of it), or
// reads on in later turns until the peer's close ends it.
func TestDiscardIsBounded(t *testing.T) {
	const queued = (discardRounds + 2) * readBufSize
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"epoll", Config{Backend: BackendEpoll}},
		{"uring-poll", Config{Backend: BackendUring, IO: IOPoll}},
		{"uring-kernelwait", Config{Backend: BackendUring, KernelWait: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Loops = 1
			r := reactorWith(t, cfg)
			h := &bigOnShut{opened: make(chan *Conn, 1), closed: make(chan error, 1)}
			_, peer := listenDialWith(t, r, h, ListenConfig{LingerTimeout: time.Minute})
			c := <-h.opened
			if err := unix.SetsockoptInt(int(c.fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4*queued); err != nil {
				t.Fatal(err)
			}
			g := newGate()
			dropped := make(chan uint64, 1)
			c.l.postTask(gateThen{g, func(l *loop) {
				c.beginDrain(nil) // nothing to flush: it lingers, and discards
				dropped <- c.ln.bytesDiscarded.Load()
			}}, 0)
			<-g.entered
			peer.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := peer.Write(make([]byte, queued)); err != nil {
				close(g.release)
				t.Fatal(err)
			}
			waitUntil(t, "the bytes in the server's receive queue", func() bool {
				n, _ := unix.IoctlGetInt(int(c.fd), unix.SIOCINQ)
				return n == queued
			})
			close(g.release)
			if n := <-dropped; n != discardRounds*readBufSize {
				t.Fatalf("one discard dropped %d bytes of %d queued, want %d (%d reads of %d)",
					n, queued, discardRounds*readBufSize, discardRounds, readBufSize)
			}
			peer.Close() // a Conn still lingering ends with the peer's close
			select {
			case <-h.closed:
			case <-time.After(10 * time.Second):
				t.Fatalf("Conn still %v 10s after its peer closed", c.phase())
			}
		})
	}
}
