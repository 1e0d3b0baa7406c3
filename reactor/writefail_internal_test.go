//go:build linux

package reactor

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWriteFailureCondemns: a Write whose write(2) fails (the peer reset)
// returns that error, and so does every Write after it until the loop has
// closed the Conn: the same error, the one that condemned it, not a fresh
// failure of a write that should not have been tried (failWrite records
// it where writeErr looks). OnClose's error then says what happened.
func TestWriteFailureCondemns(t *testing.T) {
	for _, b := range []Backend{BackendUring, BackendEpoll} {
		t.Run(string(b), func(t *testing.T) {
			r := oneLoopReactor(t, b)
			l := r.loops[0]
			h := &eofKeeper{opened: make(chan *Conn, 1), closed: make(chan error, 1)}
			_, peer := listenDial(t, r, h)
			c := <-h.opened
			// Hold the loop, so that it cannot close c on the reset's
			// read error before the Writes below meet it.
			g := newGate()
			if !l.postTask(g, 0) {
				t.Fatal("the loop stopped")
			}
			<-g.entered
			peer.(*net.TCPConn).SetLinger(0)
			peer.Close() // a reset, delivered before Close returns on loopback
			_, first := c.Write([]byte("x"))
			if !errors.Is(first, unix.ECONNRESET) && !errors.Is(first, unix.EPIPE) {
				close(g.release)
				t.Fatalf("Write to a reset peer = %v, want ECONNRESET or EPIPE", first)
			}
			_, again := c.Write([]byte("y"))
			close(g.release)
			if again != first {
				t.Fatalf("the Write after a failed one = %v, want the error that condemned the Conn (%v)", again, first)
			}
			select {
			case err := <-h.closed:
				if !errors.Is(err, unix.ECONNRESET) && !errors.Is(err, unix.EPIPE) {
					t.Fatalf("OnClose's error = %v, want the reset", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the condemned Conn never closed")
			}
		})
	}
}
