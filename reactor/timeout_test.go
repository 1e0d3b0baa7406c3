//go:build linux

package reactor_test

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/reactor"
)

// TestWriteTimeoutAfterOutputEmptiedWithOutArmed: a Conn's output stalls
// (Out armed, its WriteTimeout entry set); its peer reads a little, enough
// for a later flush to take all that was pending but not enough for the
// socket to report Out; the entry then fires with nothing pending and
// leaves none. Output that stalls again, the Out request still in flight,
// must get its entry back: the Conn is closed by WriteTimeout, not left
// paused for ever. (Before the fix, armWrite scheduled only when it made a
// new Out request; this failed on epoll and after polls.) Through the
// ring, sends keep the output pending while in flight, so the entry never
// finds it empty there.
func TestWriteTimeoutAfterOutputEmptiedWithOutArmed(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			if throughRing(r) {
				// Output goes by SEND requests, which wait in the kernel
				// for room and keep it pending meanwhile: no Out poll is
				// armed, and a Write may queue before the socket is full,
				// so the case built here does not arise.
				t.Skip("a Conn writing through the ring arms no Out poll")
			}
			h := &pusher{opened: make(chan *reactor.Conn, 1), closed: make(chan error, 1)}
			const wt = 200 * time.Millisecond
			ln, err := r.Listen("unix", filepath.Join(t.TempDir(), "s"), h, reactor.ListenConfig{WriteTimeout: wt})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c := dial(t, ln)
			var sc *reactor.Conn
			select {
			case sc = <-h.opened:
			case <-time.After(5 * time.Second):
				t.Fatal("the connection was not opened within 5s")
			}
			small := make([]byte, 1000)
			for i := 0; sc.Pending() == 0; i++ { // fill the socket, then a little pending
				sc.Write(small)
				if i > 1e6 {
					t.Fatal("output never became pending")
				}
			}
			waitFor(t, 5*time.Second, "the loop to arm Out and sleep", func() bool { return reactor.Asleep(r) })
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, make([]byte, 8192)); err != nil { // room for what is pending, not enough for Out
				t.Fatalf("client read: %v", err)
			}
			sc.Write([]byte{1}) // a flush that empties the output
			waitFor(t, 5*time.Second, "the flush to empty the output", func() bool { return sc.Pending() == 0 })
			// The entry fires with nothing pending and leaves none (the
			// Conn's was the loop's only timer).
			waitFor(t, 5*time.Second, "the write-timeout entry to fire and leave none", func() bool { return r.Stats().Timers == 0 })
			sc.Write(make([]byte, 1<<20)) // stalls for good
			select {
			case err := <-h.closed:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("OnClose err = %v, want the write timeout", err)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("output stalled with WriteTimeout %v and the Conn was never closed (pending %d)", wt, sc.Pending())
			}
		})
	}
}

// onOpenCloser calls Listener.Close from OnOpen, where it must answer
// ErrOnLoop.
type onOpenCloser struct {
	ln   chan *reactor.Listener
	errs chan error
}

func (o *onOpenCloser) OnOpen(*reactor.Conn) {
	ln := <-o.ln
	o.errs <- ln.Close()
	o.ln <- ln // for a second connection, if any
}
func (o *onOpenCloser) OnData(*reactor.Conn, []byte) {}
func (o *onOpenCloser) OnClose(*reactor.Conn, error) {}

// TestBlockingCallFromOnOpenOfParkedLoop: a connection accepted by a loop
// that was parked (through the ring: handed over from the accept's
// completion) runs OnOpen as a callback, so a blocking call there answers
// ErrOnLoop instead of deadlocking the loop.
func TestBlockingCallFromOnOpenOfParkedLoop(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			h := &onOpenCloser{ln: make(chan *reactor.Listener, 1), errs: make(chan error, 4)}
			ln, err := r.Listen("tcp", "127.0.0.1:0", h, reactor.ListenConfig{})
			if err != nil {
				t.Fatal(err)
			}
			h.ln <- ln
			waitFor(t, 5*time.Second, "the loop to park", func() bool { return reactor.Asleep(r) })
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			select {
			case err := <-h.errs:
				if !errors.Is(err, reactor.ErrOnLoop) {
					t.Fatalf("Listener.Close from OnOpen = %v, want ErrOnLoop", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Listener.Close from OnOpen blocked: the loop is deadlocked")
			}
			ln.Close()
		})
	}
}

// TestIdleAndReadDeadlinesHoldNoTimerEntry: Conns whose only deadlines are
// their idle and read timeouts are watched by their loop's sweep and hold
// no entry on its timer heap (16 bytes each, and a heap operation per Conn
// opened), while they serve as usual.
func TestIdleAndReadDeadlinesHoldNoTimerEntry(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			h := &closeErrs{errs: make(chan error, 20)}
			ln := listen(t, r, h, reactor.ListenConfig{IdleTimeout: time.Hour, ReadTimeout: time.Hour})
			var cs []net.Conn
			for range 20 {
				c := dial(t, ln)
				c.Write([]byte("x"))
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				cs = append(cs, c)
			}
			if got := r.Stats().Timers; got != 0 {
				t.Fatalf("%d timer entries for 20 idle Conns with only idle and read timeouts, want 0", got)
			}
			for _, c := range cs {
				c.Close()
			}
		})
	}
}

// TestSweepClosesEveryConnAtItsDeadline: Conns whose idle deadlines pass
// together, and others whose deadlines pass one after another, each close
// with ErrIdleTimeout no earlier than the timeout after their last byte and
// no later than the sweep's lateness allows (1/64 of it, given a second of
// slack here for a loaded machine). A walk that skipped the Conn moved into
// a closed one's place, or a sweep not set again for the Conns still open
// (the later ones open before the first sweep, and nothing happens after),
// would leave one open for ever.
func TestSweepClosesEveryConnAtItsDeadline(t *testing.T) {
	const idle = 300 * time.Millisecond
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			h := &closeErrs{errs: make(chan error, 32)}
			ln := listen(t, r, h, reactor.ListenConfig{IdleTimeout: idle})
			type probe struct {
				c    net.Conn
				last time.Time // no later than the server's last activity
			}
			var ps []probe
			start := func() {
				last := time.Now()
				c := dial(t, ln)
				c.Write([]byte("x"))
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				ps = append(ps, probe{c, last})
			}
			for range 8 { // together
				start()
			}
			// One after another, all before the first sweep: nothing
			// but the sweep setting itself again closes these.
			for range 3 {
				time.Sleep(idle / 4)
				start()
			}
			if time.Since(ps[0].last) >= idle {
				t.Skip("the machine stalled: the last Conn opened after the first ones' deadline, which proves less")
			}
			for _, p := range ps {
				p.c.SetReadDeadline(time.Now().Add(idle + 5*time.Second))
				if _, err := p.c.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("read after the idle timeout = %v, want EOF", err)
				}
				if d := time.Since(p.last); d < idle || d > idle+idle/64+time.Second {
					t.Fatalf("closed %v after its last byte, want within [%v, %v]", d, idle, idle+idle/64+time.Second)
				}
			}
			for range ps {
				if err := <-h.errs; !errors.Is(err, reactor.ErrIdleTimeout) {
					t.Fatalf("OnClose err = %v, want ErrIdleTimeout", err)
				}
			}
		})
	}
}
