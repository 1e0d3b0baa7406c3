//go:build linux

package reactor

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/cancel"
	"github.com/oneshot-io/oneshot/poller"
)

// placeWatch is a Handler that closes Conns in the ways that meet a
// receive in flight, and counts OnOpen and OnClose per Conn.
type placeWatch struct {
	mu     sync.Mutex
	opened map[*Conn]int
	closed map[*Conn]int
}

// The ways a Conn ends, by the first byte its peer sends.
const (
	endPeerEOF   = 'e' // echo; the peer closes after reading it
	endCloseNow  = 'n' // CloseNow in OnData: the receive is armed (retired)
	endCloseLate = 'l' // CloseNow from a task after more bytes came
	endDrain     = 'd' // Write a backlog, then Close: draining stops the receive
	endReactor   = 'r' // left open: the reactor's Close ends it
)

func (h *placeWatch) OnOpen(c *Conn) {
	h.mu.Lock()
	h.opened[c]++
	h.mu.Unlock()
}

func (h *placeWatch) OnData(c *Conn, b []byte) {
	switch b[0] {
	case endPeerEOF, endReactor:
		c.Write(b)
	case endCloseNow:
		c.CloseNow()
	case endCloseLate:
		// Closed from another goroutine while the peer goes on sending:
		// its bytes reach the Conn before the close or its retired
		// receive after it (TestRetiredReceiveDropsWhatItBrings orders
		// that on purpose); either way every count below must hold.
		go c.CloseNow()
	case endDrain:
		c.Write(make([]byte, 1<<20))
		c.Close()
	}
}

func (h *placeWatch) OnClose(c *Conn, _ error) {
	h.mu.Lock()
	h.closed[c]++
	h.mu.Unlock()
}

// TestConnPlacesExactlyOnce: Conns end in every way that meets their
// receive in flight (the peer's EOF, CloseNow with the receive armed, a
// drain that stops it, the reactor's Close), many at once, and afterwards
// every place a Conn took is free again and nothing was counted twice or
// lost: no event was stale (none can be: a place is freed only after the
// kernel's end), every request armed completed once (Outstanding back to
// 0, and as many completions of each kind as arms), every receive buffer
// went back, and OnClose ran once per OnOpen.
func TestConnPlacesExactlyOnce(t *testing.T) {
	for _, b := range []Backend{BackendUring, BackendEpoll} {
		t.Run(string(b), func(t *testing.T) {
			for round := range 3 {
				placesRound(t, b, round)
			}
		})
	}
}

func placesRound(t *testing.T, b Backend, round int) {
	r := oneLoopReactor(t, b)
	h := &placeWatch{opened: map[*Conn]int{}, closed: map[*Conn]int{}}
	ln, err := r.Listen("tcp", "127.0.0.1:0", h, ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ends := []byte{endPeerEOF, endCloseNow, endCloseLate, endDrain, endReactor}
	const perEnd = 12
	var wg sync.WaitGroup
	var left []net.Conn // endReactor's, open until the reactor closes
	var leftMu sync.Mutex
	errs := make(chan error, len(ends)*perEnd)
	for i := range len(ends) * perEnd {
		end := ends[i%len(ends)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := placeClient(ln.Addr().String(), end, &left, &leftMu); err != nil {
				errs <- fmt.Errorf("%c: %w", end, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	l := r.loops[0]
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range left {
		c.Close()
	}
	// The loop has stopped: its state is this goroutine's to read.
	st := r.Stats()
	if st.StaleDropped != 0 || st.Outstanding != 0 || st.Armed != st.Completed() {
		t.Errorf("round %d: %d events stale, %d requests outstanding, %d armed and %d completed (%d ready, %d failed, %d canceled, %d closed)",
			round, st.StaleDropped, st.Outstanding, st.Armed, st.Completed(), st.CompletedReady, st.CompletedError, st.CompletedCancel, st.CompletedClosed)
	}
	if l.rcv != nil && l.rcv.Held() != 0 {
		t.Errorf("round %d: %d receive buffers never went back", round, l.rcv.Held())
	}
	free := 0
	for i := l.freeServed; i != 0; i = l.served.At(int(i) - 1).free {
		free++
		if free > l.hiServed {
			t.Fatalf("round %d: the free list of places loops", round)
		}
	}
	for i := range l.hiServed {
		if p := l.served.At(i); p.c != nil || p.rx != 0 || p.rec != (poller.TagRecord{}) {
			t.Errorf("round %d: place %d still taken after the reactor closed (rx %#x)", round, i, p.rx)
		}
	}
	if l.nServed != 0 || free != l.hiServed {
		t.Errorf("round %d: %d Conns still open, %d of %d places free", round, l.nServed, free, l.hiServed)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.opened) != len(ends)*perEnd {
		t.Errorf("round %d: %d Conns opened, want %d", round, len(h.opened), len(ends)*perEnd)
	}
	for c, n := range h.opened {
		if n != 1 || h.closed[c] != 1 {
			t.Errorf("round %d: a Conn saw OnOpen %d times and OnClose %d times", round, n, h.closed[c])
		}
	}
}

// placeClient plays one peer: it says how its Conn should end and then
// behaves as that end needs.
func placeClient(addr string, end byte, left *[]net.Conn, mu *sync.Mutex) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := bytes.Repeat([]byte{end}, 64)
	if _, err := c.Write(msg); err != nil {
		c.Close()
		return err
	}
	switch end {
	case endPeerEOF:
		defer c.Close()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			return fmt.Errorf("echo %q, %v", got, err)
		}
	case endReactor:
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			c.Close()
			return err
		}
		mu.Lock()
		*left = append(*left, c)
		mu.Unlock()
	case endCloseLate:
		defer c.Close()
		for range 20 { // the Conn takes them, or its retired receive drops them
			if _, err := c.Write(msg); err != nil {
				break // reset: it closed
			}
		}
		io.Copy(io.Discard, c)
	default:
		defer c.Close()
		io.Copy(io.Discard, c) // until the server's close
	}
	return nil
}

// retireProbe is a loop task that holds the loop until released (as
// gate does); then, once the kernel has taken the bytes c's peer sent
// meanwhile into a receive buffer (c's socket holds none: the CQE is
// posted, and the loop, still in this task, has not handled it), it
// closes c at once and reports c's place as finish left it.
type retireProbe struct {
	gate
	c    *Conn
	want uint64 // the bytes c's peer will have sent
	got  chan retired
}

type retired struct {
	took     bool // the kernel took the bytes before the close
	i        int  // c's place
	rx       rxBits
	sameConn bool
}

func (p retireProbe) runTask(l *loop, _ int32) {
	p.gate.runTask(l, 0)
	c := p.c
	var r retired
	for deadline := time.Now().Add(2 * time.Second); l.rcv != nil && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		// Arrived (loopback may defer delivery to a softirq), and no
		// longer in the socket: in a receive buffer.
		if ti, err := unix.GetsockoptTCPInfo(int(c.fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil && ti.Bytes_received >= p.want && c.inq() == 0 {
			r.took = true
			break
		}
	}
	r.i = int(c.slot) - 1
	c.doClose(taskCloseNow, nil)
	e := l.served.At(r.i)
	r.rx, r.sameConn = e.rx, e.c == c
	p.got <- r
}

// placePeek is a loop task reporting whether place i is free.
type placePeek struct {
	i   int
	got chan bool
}

func (p placePeek) runTask(l *loop, _ int32) { p.got <- l.served.At(p.i).c == nil }

// TestRetiredReceiveDropsWhatItBrings orders one collision on purpose: a
// Conn closes (CloseNow) while its receive holds bytes the kernel took
// and the loop has not handled. Its place stays taken, retired, until the
// kernel's end: the bytes go to no one (counted as discarded, never to
// OnData after OnClose), the end frees the place, and nothing is counted
// stale. epoll has no receive to retire: the place is freed at once.
func TestRetiredReceiveDropsWhatItBrings(t *testing.T) {
	for _, b := range []Backend{BackendUring, BackendEpoll} {
		t.Run(string(b), func(t *testing.T) {
			r := oneLoopReactor(t, b)
			defer r.Close()
			l := r.loops[0]
			h := &countingHandler{opened: make(chan *Conn, 1)}
			ln, peer := listenDial(t, r, h)
			c := <-h.opened
			// A first message shows the receive armed and working.
			if _, err := peer.Write(make([]byte, 64)); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "the first 64 bytes", func() bool { return h.data.Load() == 64 })
			const late = 1000
			probe := retireProbe{gate: newGate(), c: c, want: 64 + late, got: make(chan retired, 1)}
			if !l.postTask(probe, 0) {
				t.Fatal("the loop stopped")
			}
			<-probe.entered
			_, err := peer.Write(make([]byte, late))
			close(probe.release)
			if err != nil {
				t.Fatal(err)
			}
			got := <-probe.got
			if l.rcv == nil {
				if got.sameConn || got.rx != 0 {
					t.Fatalf("place %d kept (rx %#x) by a Conn closed with no receive in flight", got.i, got.rx)
				}
			} else {
				if !got.sameConn {
					t.Fatal("the closed Conn's place went to another at once")
				}
				if !got.took {
					t.Skip("the kernel did not take the bytes within 2s: the collision did not happen")
				}
				if got.rx&(rxArmed|rxRetired) != rxArmed|rxRetired {
					t.Fatalf("place %d after CloseNow with a receive in flight: rx %#x, want armed and retired", got.i, got.rx)
				}
			}
			waitUntil(t, "the place freed", func() bool {
				p := placePeek{i: got.i, got: make(chan bool, 1)}
				return l.postTask(p, 0) && <-p.got
			})
			// The end, which freed the place, comes after every buffer of
			// the receive: all the late bytes were seen by now.
			if d := ln.bytesDiscarded.Load(); l.rcv != nil && d != late {
				t.Fatalf("%d of the %d bytes the retired receive brought were discarded", d, late)
			}
			if n := h.data.Load(); n != 64 {
				t.Fatalf("OnData got %d bytes, want the first 64 only: the loop handled the late ones before the close", n)
			}
			if h.closed.Load() != 1 {
				t.Fatalf("OnClose ran %d times", h.closed.Load())
			}
			if s := r.Stats(); s.StaleDropped != 0 {
				t.Fatalf("%d stale events", s.StaleDropped)
			}
		})
	}
}

// countingHandler counts what its Conns read and their closes.
type countingHandler struct {
	opened chan *Conn
	data   atomic.Int64
	closed atomic.Int32
}

func (h *countingHandler) OnOpen(c *Conn) { h.opened <- c }
func (h *countingHandler) OnData(c *Conn, b []byte) {
	if h.closed.Load() != 0 {
		panic("OnData after OnClose")
	}
	h.data.Add(int64(len(b)))
}
func (h *countingHandler) OnClose(*Conn, error) { h.closed.Add(1) }

// TestPlaceTagsNameOneLife: a place's tag names the place in one
// generation only. Once the place is freed and taken by another Conn, the
// old tag finds nothing (the poller would find no record for it), the new
// one finds the place; a tag outside connTag's layout finds nothing; and
// the generation wraps after 256 moves, the bound the doc gives.
func TestPlaceTagsNameOneLife(t *testing.T) {
	l := &loop{}
	take := func() *Conn {
		c := &Conn{l: l}
		if err := l.addConn(c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := take()
	old := c1.tag()
	if e, i := l.entryOf(old); e == nil || e.c != c1 || i != 0 {
		t.Fatalf("entryOf(%#x) = %v, %d: want c1's place 0", old, e, i)
	}
	l.dropConn(c1)
	c2 := take()
	if c2.slot != 1 {
		t.Fatalf("the freed place was not reused: c2 at %d", c2.slot)
	}
	if e, _ := l.entryOf(old); e != nil {
		t.Fatalf("c1's tag %#x still finds a place after c2 took it", old)
	}
	if e, _ := l.entryOf(c2.tag()); e == nil || e.c != c2 {
		t.Fatalf("c2's tag %#x does not find its place", c2.tag())
	}
	for _, bad := range []uint64{
		c2.tag() &^ cancel.CallerBit,    // a cancel tag
		c2.tag() | 1<<40,                // a bit outside the layout
		c2.tag() &^ poller.TagIndexMask, // index+1 of 0
		connTag(1, l.served.At(0).gen),  // a place never taken
	} {
		if e, _ := l.entryOf(bad); e != nil {
			t.Errorf("entryOf(%#x) found a place", bad)
		}
	}
	for range 255 {
		l.dropConn(l.served.At(0).c)
		take()
	}
	if e, _ := l.entryOf(old); e == nil {
		t.Fatalf("after 256 frees of place 0 the first tag %#x should match again (8-bit generation)", old)
	}
}

// loopDo runs f on l and waits for it.
type loopDo struct {
	f    func(*loop)
	done chan struct{}
}

func (d loopDo) runTask(l *loop, _ int32) { d.f(l); close(d.done) }

func onLoop(t *testing.T, l *loop, f func(*loop)) {
	t.Helper()
	d := loopDo{f, make(chan struct{})}
	if !l.postTask(d, 0) {
		t.Fatal("the loop stopped")
	}
	<-d.done
}

// TestReceiveEndMovesItsTag: each receive on a place gets a tag of its
// own, so a cancel the kernel runs late cannot hit the next one, the same
// Conn's: a Conn whose receive is stopped and armed again keeps its place
// under a new tag, which the old one no longer finds. epoll has no
// receives: its places keep no receive state.
func TestReceiveEndMovesItsTag(t *testing.T) {
	for _, b := range []Backend{BackendUring, BackendEpoll} {
		t.Run(string(b), func(t *testing.T) {
			r := oneLoopReactor(t, b)
			l := r.loops[0]
			h := &countingHandler{opened: make(chan *Conn, 1)}
			_, peer := listenDial(t, r, h)
			c := <-h.opened
			send := func(want int64) {
				if _, err := peer.Write(make([]byte, 64)); err != nil {
					t.Fatal(err)
				}
				waitUntil(t, "the bytes read", func() bool { return h.data.Load() == want })
			}
			send(64)
			if l.rcv == nil {
				onLoop(t, l, func(l *loop) {
					if rx := l.entry(c).rx; rx != 0 {
						t.Errorf("a place with receive state %#x on a loop without receives", rx)
					}
				})
				return
			}
			var old uint64
			onLoop(t, l, func(l *loop) {
				if !c.receiving() {
					t.Error("no receive armed after the first bytes")
				}
				old = c.tag()
				c.stopRecv()
			})
			waitUntil(t, "the receive armed again", func() bool {
				var again bool
				onLoop(t, l, func(l *loop) { again = c.receiving() && c.tag() != old })
				return again
			})
			onLoop(t, l, func(l *loop) {
				if e, _ := l.entryOf(old); e != nil {
					t.Errorf("the stopped receive's tag %#x still finds the place", old)
				}
				if int(c.tag()&poller.TagIndexMask) != int(old&poller.TagIndexMask) {
					t.Errorf("the Conn moved from place %#x to %#x", old&poller.TagIndexMask, c.tag()&poller.TagIndexMask)
				}
			})
			send(128) // the new receive reads
		})
	}
}
