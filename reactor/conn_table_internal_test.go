//go:build linux

package reactor

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

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
		// Closed from another goroutine once the peer's next bytes are
		// likely in flight: they reach a retired receive, or the Conn
		// before it closes; either way every count below must hold.
		go func() { time.Sleep(time.Millisecond); c.CloseNow() }()
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
// lost: no event found a place without an armed receive (a place freed,
// or a receive ended, too early), every receive armed was delivered once
// (Outstanding back to 0), and OnClose ran once per OnOpen.
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
	if st.StaleDropped != 0 || st.Outstanding != 0 {
		t.Errorf("round %d: %d events found no live request or armed receive, %d requests never delivered",
			round, st.StaleDropped, st.Outstanding)
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
