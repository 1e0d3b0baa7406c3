//go:build linux

package reactor

import (
	"testing"
	"time"
)

// stuckWriter writes a backlog no peer reads as each Conn opens.
type stuckWriter struct{ opened chan *Conn }

func (h *stuckWriter) OnOpen(c *Conn) {
	c.Write(make([]byte, 8<<20))
	h.opened <- c
}
func (h *stuckWriter) OnData(*Conn, []byte) {}
func (h *stuckWriter) OnClose(*Conn, error) {}

// sendPeek reads, on c's loop, the chunk c's send in flight sends from
// (nil when none is in flight), the bytes of it still to go, and the bytes
// c's Listener has sent.
type sendPeek struct {
	c   *Conn
	got chan peeked
}

type peeked struct {
	chunk      *outChunk
	left, sent int
}

func (p sendPeek) runTask(l *loop, _ int32) {
	c := p.c
	var pk peeked
	if c.wr != 0 && l.reqAt(c.wr).Data().ev&evSend != 0 {
		c.mu.Lock()
		pk.chunk, pk.left = c.out.first, len(c.out.firstBytes())
		c.mu.Unlock()
	}
	pk.sent = int(c.ln.bytesOut.Load())
	p.got <- pk
}

// TestCloseKeepsAnInFlightSendsChunk: the reactor's Close ends a Conn
// whose send through the ring is stuck on a peer that never reads. The
// closer delivers that send before the kernel's end (its cancel is only
// submitted at the next enter, and until the kernel answers it the send
// may still read its chunk), so the chunk must not go back to the pool,
// where another Conn would write into it. A chunk given back has its
// links cleared; one kept names itself as its queue's last. A try in
// which the chunk's bytes all went out after all (the send was not stuck
// yet) proves nothing, and another is made.
func TestCloseKeepsAnInFlightSendsChunk(t *testing.T) {
	for try := 1; ; try++ {
		if closeKeepsInFlightChunk(t) {
			return
		}
		if try == 3 {
			t.Fatal("3 tries, and in each the send's chunk went out before the Close")
		}
	}
}

func closeKeepsInFlightChunk(t *testing.T) bool {
	r := oneLoopReactor(t, BackendUring)
	if r.loops[0].rcv == nil {
		r.Close()
		t.Skip("no receive path through the ring here: sends go by write(2)")
	}
	h := &stuckWriter{opened: make(chan *Conn, 1)}
	ln, _ := listenDial(t, r, h) // the peer never reads: the send sticks once the socket is full
	c := <-h.opened
	peek := func() peeked {
		p := sendPeek{c: c, got: make(chan peeked, 1)}
		if !c.l.postTask(p, 0) {
			t.Fatal("the loop stopped")
		}
		return <-p.got
	}
	// Wait for a send that stopped moving: the same chunk, nothing more
	// sent, at two looks. Whether it was really stuck is judged after.
	var last peeked
	for deadline := time.Now().Add(5 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatal("no send through the ring stuck within 5s")
		}
		pk := peek()
		if pk.chunk != nil && pk == last {
			break
		}
		last = pk
		time.Sleep(5 * time.Millisecond)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if last.chunk.last == last.chunk {
		return true // kept
	}
	if int(ln.bytesOut.Load()) >= last.sent+last.left {
		return false // its bytes all went out: pooled rightly
	}
	t.Fatalf("the chunk of a send the kernel had not ended went back to the pool with %d of its bytes unsent (its queue links cleared: last %p)",
		last.sent+last.left-int(ln.bytesOut.Load()), last.chunk.last)
	return false
}
