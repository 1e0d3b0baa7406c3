//go:build linux

package reactor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// eofKeeper is an EOFHandler that keeps its Conns open at the peer's EOF.
type eofKeeper struct {
	opened chan *Conn
	closed chan error
}

func (h eofKeeper) OnOpen(c *Conn)             { h.opened <- c }
func (h eofKeeper) OnData(*Conn, []byte)       {}
func (h eofKeeper) OnEOF(*Conn)                {}
func (h eofKeeper) OnClose(_ *Conn, err error) { h.closed <- err }

// dialOpened dials ln n times, each once the last one's Conn was opened
// (it comes on opened); the dialed ends close when the test ends.
func dialOpened(t *testing.T, ln *Listener, n int, opened <-chan *Conn) {
	t.Helper()
	for range n {
		peer, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { peer.Close() })
		<-opened
	}
}

// shutAfterGate holds the loop until released, then runs what
// Listener.Shutdown's sweep runs on c.
type shutAfterGate struct {
	gate
	c *Conn
}

func (s shutAfterGate) runTask(l *loop, _ int32) {
	s.gate.runTask(l, 0)
	s.c.runTask(l, taskShutdown)
}

// TestShutdownRacesPeerEOF: Shutdown stops a Conn's receive to read what
// the socket still holds, and the peer's FIN has reached the socket
// before (the loop is held while the peer half-closes, until the socket
// is in CLOSE_WAIT), so the kernel ends the receive at EOF before the
// stop reaches it, unless the task work that ends it runs after the
// stop's enter. Shutdown's drain must close the Conn either way: an EOF
// taken on the way must not pass for one that an EOFHandler, which keeps
// its Conns open, is told of instead.
func TestShutdownRacesPeerEOF(t *testing.T) {
	for _, b := range []Backend{BackendUring, BackendEpoll} {
		t.Run(string(b), func(t *testing.T) {
			for round := range 5 {
				r := oneLoopReactor(t, b)
				h := eofKeeper{make(chan *Conn, 1), make(chan error, 1)}
				_, peer := listenDial(t, r, h)
				c := <-h.opened
				s := shutAfterGate{newGate(), c}
				if !r.loops[0].postTask(s, 0) {
					t.Fatal("the loop stopped")
				}
				<-s.entered
				err := peer.(*net.TCPConn).CloseWrite()
				if err == nil {
					waitUntil(t, "the peer's FIN at the Conn's socket", func() bool {
						ti, err := unix.GetsockoptTCPInfo(int(c.fd), unix.IPPROTO_TCP, unix.TCP_INFO)
						return err == nil && ti.State == unix.BPF_TCP_CLOSE_WAIT
					})
				}
				close(s.release)
				if err != nil {
					t.Fatal(err)
				}
				select {
				case <-h.closed:
				case <-time.After(5 * time.Second):
					t.Fatalf("round %d: Shutdown asked as the peer's EOF came, and the Conn is still open 5s later", round)
				}
				peer.Close()
				r.Close()
			}
		})
	}
}

// TestShutdownAfterReactorCloseIsClean: the reactor's Close ends every
// open Conn with ErrClosed, which is not a Shutdown's drain cut short: a
// Shutdown after it reports a clean end. With two loops, the loop that
// serves the listening socket stops (and closes it) while the other is
// held, so the other ends its Conns after the listener stopped.
func TestShutdownAfterReactorCloseIsClean(t *testing.T) {
	for _, b := range []Backend{BackendUring, BackendEpoll} {
		for _, loops := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/%d", b, loops), func(t *testing.T) {
				r, err := New(Config{Backend: b, Loops: loops})
				if errors.Is(err, ErrUnavailable) {
					t.Skipf("io_uring unavailable here: %v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				h := eofKeeper{make(chan *Conn, 4), make(chan error, 4)}
				ln, err := r.Listen("tcp", "127.0.0.1:0", h, ListenConfig{})
				if err != nil {
					t.Fatal(err)
				}
				dialOpened(t, ln, 4, h.opened) // each open, its read in flight
				closed := make(chan error, 1)
				if loops == 1 {
					closed <- r.Close()
				} else {
					other := r.loops[0]
					if other == ln.socks[0].l {
						other = r.loops[1]
					}
					g := newGate()
					if !other.postTask(g, 0) {
						t.Fatal("the loop stopped")
					}
					<-g.entered
					go func() { closed <- r.Close() }()
					// The listener's loop closes its socket (on io_uring
					// setting stopping first; on epoll the socket's poll
					// ends ErrClosed and stopping stays unset, so there
					// this case guards the path, not the regression).
					select {
					case <-ln.closedCh:
						close(g.release)
					case <-time.After(5 * time.Second):
						close(g.release)
						t.Fatal("the listener's loop did not stop within 5s")
					}
				}
				if err := <-closed; err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := ln.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown after the reactor's Close: %v (%d Conns counted cut in a drain)", err, ln.cutInDrain.Load())
				}
			})
		}
	}
}

// TestReactorCloseCutsARunningShutdown: a Shutdown that has begun when
// the reactor's Close ends its Conns reports a drain cut short
// (ErrDrainIncomplete), whichever part of it the loop had run: the loop
// is held from before Shutdown until Close is asked, so Close finds
// Shutdown's work still queued.
func TestReactorCloseCutsARunningShutdown(t *testing.T) {
	for _, b := range []Backend{BackendUring, BackendEpoll} {
		t.Run(string(b), func(t *testing.T) {
			r := oneLoopReactor(t, b)
			h := eofKeeper{make(chan *Conn, 2), make(chan error, 2)}
			ln, err := r.Listen("tcp", "127.0.0.1:0", h, ListenConfig{})
			if err != nil {
				t.Fatal(err)
			}
			dialOpened(t, ln, 2, h.opened)
			g := newGate()
			if !r.loops[0].postTask(g, 0) {
				t.Fatal("the loop stopped")
			}
			<-g.entered
			var once sync.Once
			release := func() { once.Do(func() { close(g.release) }) }
			t.Cleanup(release) // before the reactor's Close, which waits for the loop
			shut := make(chan error, 1)
			go func() { shut <- ln.Shutdown(context.Background()) }()
			waitUntil(t, "Shutdown begun", ln.closing.Load) // its first step: stop accepting
			go r.Close()
			waitUntil(t, "Close asked", r.closing.Load)
			release()
			if err := <-shut; !errors.Is(err, ErrDrainIncomplete) {
				t.Fatalf("Shutdown cut by the reactor's Close returned %v, want ErrDrainIncomplete", err)
			}
		})
	}
}

// echoHandler is an echo Handler for the internal tests.
type echoHandler struct{ opened chan *Conn }

func (h *echoHandler) OnOpen(c *Conn)             { h.opened <- c }
func (h *echoHandler) OnData(c *Conn, b []byte)   { c.Write(b) }
func (h *echoHandler) OnClose(c *Conn, err error) {}

// TestPausedConnHoldsLittle: a Conn whose peer sends faster than it reads
// pauses on MaxPending, and a receive that brings bytes while it is paused
// holds them until it resumes. It receives one buffer at a time from the
// first time its output backs up until the output drains while it is open,
// resumptions included: a resumed Conn finds the socket's queue full (the
// peer went on sending), and a multishot receive armed then took all of it
// before its Conn paused again, megabytes held per Conn. Sampled on the
// loop while 32 MiB go through a slow reader, what a Conn holds stays
// within a few buffers. Before its first pause, a Conn's receive is the
// multishot one armed at open, which a flooding peer keeps busy: where the
// kernel can limit it (connRecvLimit), that pause holds no more than the
// limit. On epoll (and io_uring without ring reads) a paused
// Conn stops reading and holds nothing at all.
func TestPausedConnHoldsLittle(t *testing.T) {
	for _, b := range []Backend{BackendUring, BackendEpoll} {
		t.Run(string(b), func(t *testing.T) { testPausedConnHoldsLittle(t, b) })
	}
}

func testPausedConnHoldsLittle(t *testing.T, b Backend) {
	r := oneLoopReactor(t, b)
	l := r.loops[0]
	h := &echoHandler{opened: make(chan *Conn, 1)}
	ln, err := r.Listen("tcp", "127.0.0.1:0", h, ListenConfig{MaxPending: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peer.SetDeadline(time.Now().Add(30 * time.Second))
	c := <-h.opened
	const total = 32 << 20
	go func() {
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := peer.Write(chunk); err != nil {
				return
			}
		}
	}()
	read := make(chan error, 1)
	go func() {
		buf := make([]byte, 16<<10)
		for got := 0; got < total; {
			n, err := peer.Read(buf)
			if err != nil {
				read <- err
				return
			}
			got += n
			time.Sleep(100 * time.Microsecond) // a reader slower than the writer
		}
		read <- nil
	}()
	// The first pause may hold more: the multishot receive armed at
	// open has the kernel's batch of completions posted before its stop
	// reaches the kernel. What follows a resumption is what is bounded,
	// until the output drains while the Conn is open (a reader that
	// catches up): it then receives whole again, and its next pause is a
	// first one. l.drainedOpen counts those drains, so one between two
	// samples is not missed.
	first, most, pauses, resumed := 0, 0, 0, 0
	wasPaused, fresh := false, true
	var drains uint64
	for done := false; !done; {
		select {
		case err := <-read:
			if err != nil {
				t.Fatalf("reading the echo: %v", err)
			}
			done = true
		case <-time.After(time.Millisecond):
		}
		onLoop(t, l, func(*loop) {
			held := 0
			if x := c.rare.Load(); x != nil && x.held != nil {
				held = len(x.held.b)
			}
			paused := c.phase() == phPaused
			switch {
			case paused:
				pauses++
			case wasPaused:
				resumed++
				fresh = false
			}
			// After the resumption: a Conn drains only while open, so a
			// drain since the last sample came after any resumption.
			if l.drainedOpen != drains {
				drains, fresh = l.drainedOpen, true
			}
			wasPaused = paused
			if fresh {
				first = max(first, held)
			} else {
				most = max(most, held)
			}
		})
	}
	if resumed == 0 {
		t.Fatalf("the Conn was seen paused %d times and never resumed: the test proves nothing", pauses)
	}
	if l.rcv == nil && (first > 0 || most > 0) {
		t.Fatalf("a Conn reading after polls held %d bytes while paused", max(first, most))
	}
	if l.rcv != nil && l.rcv.Limited() && first > connRecvLimit+4*r.cfg.RecvBufferSize {
		// The kernel ends a multishot receive at connRecvLimit: the
		// first pause holds no more than that and a buffer or so.
		t.Fatalf("a Conn held %d bytes at a first pause, more than its receive's limit of %d", first, connRecvLimit)
	}
	if limit := 4 * r.cfg.RecvBufferSize; most > limit {
		t.Fatalf("a paused Conn held %d bytes after it had resumed, more than %d (4 receive buffers)", most, limit)
	}
	t.Logf("seen paused %d times, open after a pause %d times, drained while open %d times; held at most %d bytes after a resumption, %d at first pauses", pauses, resumed, drains, most, first)
}
