package reactor_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// TestCloseWithOutstanding closes a reactor holding 10,000 pending requests
// (one per fd, on 5,000 socketpairs, plus blocked Polls): Close returns,
// every request completes exactly once with ErrClosed, and no fd leaks
// (goroutine leaks are checked by goleak in TestMain) — DESIGN §2.5.
func TestCloseWithOutstanding(t *testing.T) {
	const pairs = 5000
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			before := openFdSet(t)
			r := newReactor(t, b, 2) // closed by the test too (idempotent)
			fds := make([]int, 0, 2*pairs)
			closed := false
			t.Cleanup(func() { // a failed row must not leave 10,000 fds to the next
				if !closed {
					for _, fd := range fds {
						unix.Close(fd)
					}
				}
			})
			for i := 0; i < pairs; i++ {
				a, p := socketpair(t)
				fds = append(fds, a, p)
			}
			counts := make([]atomic.Int32, len(fds))
			var wrong atomic.Int32
			const polls = 100
			for i, fd := range fds[polls:] {
				i := i + polls
				if _, err := r.Arm(fd, reactor.In, func(res reactor.Result) {
					counts[i].Add(1)
					if !errors.Is(res.Err, reactor.ErrClosed) {
						wrong.Add(1)
					}
				}); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			for i, fd := range fds[:polls] {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := r.Poll(context.Background(), fd, reactor.In)
					counts[i].Add(1)
					if !errors.Is(err, reactor.ErrClosed) {
						wrong.Add(1)
					}
				}()
			}
			// Armed in the kernel, not only handed to the loop: a request
			// in the inbox is not yet the backend's.
			waitFor(t, 10*time.Second, "all requests armed", func() bool {
				return r.Stats().BackendArmed == int64(len(fds))
			})
			start := time.Now()
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			t.Logf("Close with %d outstanding took %v", len(fds), time.Since(start))
			for i := range counts {
				if n := counts[i].Load(); n != 1 {
					t.Fatalf("request %d completed %d times", i, n)
				}
			}
			if wrong.Load() != 0 {
				t.Fatalf("%d requests completed with something other than ErrClosed", wrong.Load())
			}
			if s := r.Stats(); s.CompletedClosed != uint64(len(fds)) || s.Outstanding != 0 {
				t.Fatalf("stats %+v", s)
			}
			// After Close: calls are refused, Cancel is safe.
			if _, err := r.Arm(fds[0], reactor.In, func(reactor.Result) {}); !errors.Is(err, reactor.ErrClosed) {
				t.Fatalf("Arm after Close = %v, want ErrClosed", err)
			}
			if _, err := r.Poll(context.Background(), fds[0], reactor.In); !errors.Is(err, reactor.ErrClosed) {
				t.Fatalf("Poll after Close = %v, want ErrClosed", err)
			}
			for _, fd := range fds {
				unix.Close(fd)
			}
			closed = true
			if l := before.changed(t); len(l) != 0 {
				t.Fatalf("fds opened or closed between New and after Close: %v", l)
			}
		})
	}
}

// TestCloseFdCompletesFirst: closing an fd through the reactor completes
// its requests before the descriptor is closed (DESIGN §2.6): inside their
// callbacks the fd is still open.
func TestCloseFdCompletesFirst(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			a, p := socketpair(t)
			defer unix.Close(p)
			type seen struct {
				err    error
				fdOpen bool
			}
			got := make(chan seen, 3)
			cb := func(res reactor.Result) {
				_, err := unix.FcntlInt(uintptr(a), unix.F_GETFD, 0)
				got <- seen{res.Err, err == nil}
			}
			q1, err := r.Arm(a, reactor.In, cb)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Arm(a, reactor.In|reactor.RdHup, cb); err != nil {
				t.Fatal(err)
			}
			pollErr := make(chan error, 1)
			go func() {
				_, err := r.Poll(context.Background(), a, reactor.Pri)
				pollErr <- err
			}()
			waitFor(t, 5*time.Second, "3 requests armed", func() bool { return r.Stats().Armed == 3 })
			if err := r.CloseFd(a); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				s := <-got
				if !errors.Is(s.err, reactor.ErrFdClosed) || !s.fdOpen {
					t.Fatalf("callback %d: err %v, fd open %v; want ErrFdClosed on an open fd", i, s.err, s.fdOpen)
				}
			}
			if err := <-pollErr; !errors.Is(err, reactor.ErrFdClosed) {
				t.Fatalf("Poll = %v, want ErrFdClosed", err)
			}
			if q1.Cancel() {
				t.Fatal("Cancel of an fd-closed request returned true")
			}
			waitFor(t, 5*time.Second, "fd closed", func() bool {
				_, err := unix.FcntlInt(uintptr(a), unix.F_GETFD, 0)
				return err == unix.EBADF
			})
		})
	}
}

// TestStaleEventAfterFdReuse: a request pending on an fd closed through the
// reactor, whose number then comes back from socketpair, never sees the new
// socket's events and the new request never sees the old one's (DESIGN
// §2.3, §2.4; golang/go #59545). The old peer writes after the close so that
// on io_uring the old poll (which holds its own file reference, liburing
// #932) may post a late completion; it must be dropped.
func TestStaleEventAfterFdReuse(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			_, kp := pair(t) // for loop turns that refresh Stats
			for round := 0; round < 20; round++ {
				a, p := socketpair(t)
				old := make(chan reactor.Result, 2)
				if _, err := r.Arm(a, reactor.In, func(res reactor.Result) { old <- res }); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 5*time.Second, "armed", func() bool { return r.Stats().Outstanding == 1 })
				if err := r.CloseFd(a); err != nil {
					t.Fatal(err)
				}
				if res := <-old; !errors.Is(res.Err, reactor.ErrFdClosed) {
					t.Fatalf("old request: %+v, want ErrFdClosed", res)
				}
				silent := round%2 == 0 // the old peer stays quiet: nothing pays an armed poll but Forget
				if !silent {
					unix.Write(p, []byte("late")) // the old socket's last readiness
				}
				waitFor(t, 5*time.Second, "old fd closed", func() bool {
					_, err := unix.FcntlInt(uintptr(a), unix.F_GETFD, 0)
					return err == unix.EBADF
				})
				a2, p2 := socketpair(t)
				if a2 != a {
					t.Fatalf("fd %d did not come back (got %d): the test needs reuse", a, a2)
				}
				fresh := make(chan reactor.Result, 2)
				if _, err := r.Arm(a2, reactor.In, func(res reactor.Result) { fresh <- res }); err != nil {
					t.Fatal(err)
				}
				if !silent {
					unix.Write(p, []byte("more")) // still the old socket
				}
				select {
				case res := <-fresh:
					t.Fatalf("round %d: the new request completed from the old socket: %+v", round, res)
				case <-time.After(5 * time.Millisecond):
				}
				unix.Write(p2, []byte("x"))
				if res := <-fresh; res.Err != nil || res.Events&reactor.In == 0 {
					t.Fatalf("new request: %+v, want In", res)
				}
				select {
				case res := <-old:
					t.Fatalf("old request completed twice: %+v", res)
				case res := <-fresh:
					t.Fatalf("new request completed twice: %+v", res)
				default:
				}
				// Nothing of the old fd may stay armed in the kernel, even
				// with its old peer open and silent: the close went through
				// the poller's Forget (liburing #932).
				waitFor(t, 2*time.Second, "the backend to hold nothing armed", func() bool {
					r.Arm(kp, reactor.Out, func(reactor.Result) {}) // a turn, to refresh Stats
					return r.Stats().BackendArmed == 0
				})
				unix.Close(p)
				unix.Close(a2)
				unix.Close(p2)
			}
			t.Logf("stale dropped: %d", r.Stats().StaleDropped)
		})
	}
}

// TestCloseWithListenerAndConns: Close on a reactor with a listener whose
// accept is pending (tokio-uring #158: shutdown hung on a pending accept) and
// open connections returns, calls OnClose once per Conn with ErrClosed, and
// leaves no fd behind.
func TestCloseWithListenerAndConns(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			before := openFdSet(t)
			r := newReactor(t, b, 2) // closed by the test too (idempotent)
			h := &closeErrs{errs: make(chan error, 64)}
			ln, err := r.Listen("tcp", "127.0.0.1:0", h, reactor.ListenConfig{})
			if err != nil {
				t.Fatal(err)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			var clients []int
			for i := 0; i < 20; i++ {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
					t.Fatal(err)
				}
				clients = append(clients, fd)
			}
			// Opened, not only accepted: a Conn handed to the other loop
			// is opened there, and one the reactor's Close finds still
			// unopened closes without OnOpen, so without OnClose either.
			waitFor(t, 5*time.Second, "20 open", func() bool { return h.opens.Load() == 20 })
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			close(h.errs)
			n := 0
			for err := range h.errs {
				n++
				if !errors.Is(err, reactor.ErrClosed) {
					t.Fatalf("OnClose err = %v, want ErrClosed", err)
				}
			}
			if n != 20 || ln.Stats().Active != 0 {
				t.Fatalf("OnClose ran %d times for 20 Conns; stats %+v", n, ln.Stats())
			}
			if err := ln.Close(); err != nil { // after the reactor closed it
				t.Fatal(err)
			}
			for _, fd := range clients {
				unix.Close(fd)
			}
			if l := before.changed(t); len(l) != 0 {
				t.Fatalf("fds opened or closed between before and after: %v", l)
			}
		})
	}
}

// TestCloseFdInCallbackBeatsDecidedEvents: two requests on one fd become
// ready in one kernel report, but the loop takes one Event per turn
// (EventBatch 1), so the second is decided in the poller and not yet
// handled when the first's callback closes the fd. CloseFd must still
// complete it first, with ErrFdClosed on the open fd: a list of requests
// taken from the poller's record alone misses it, and it then completed
// Ready after the fd was closed, a number another file may own by then.
func TestCloseFdInCallbackBeatsDecidedEvents(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r, err := reactor.New(reactor.Config{Backend: b.kind, Loops: 1, EventBatch: 1})
			if err != nil {
				if b.kind == reactor.BackendUring && errors.Is(err, reactor.ErrUnavailable) {
					t.Skipf("io_uring unavailable here: %v", err)
				}
				t.Fatal(err)
			}
			defer r.Close()
			for round := range 10 {
				a, p := socketpair(t)
				type seen struct {
					err    error
					fdOpen bool
				}
				got := make(chan seen, 2)
				var closed atomic.Bool
				cb := func(res reactor.Result) {
					_, err := unix.FcntlInt(uintptr(a), unix.F_GETFD, 0)
					got <- seen{res.Err, err == nil}
					if closed.CompareAndSwap(false, true) {
						r.CloseFd(a)
					}
				}
				for range 2 {
					if _, err := r.Arm(a, reactor.In, cb); err != nil {
						t.Fatal(err)
					}
				}
				waitFor(t, 5*time.Second, "2 requests armed", func() bool { return r.Stats().Armed == uint64(2*(round+1)) })
				if _, err := unix.Write(p, []byte("x")); err != nil {
					t.Fatal(err)
				}
				first, second := <-got, <-got
				if first.err != nil || !first.fdOpen {
					t.Fatalf("round %d: first callback: %v, fd open %v; want Ready on an open fd", round, first.err, first.fdOpen)
				}
				if !errors.Is(second.err, reactor.ErrFdClosed) || !second.fdOpen {
					t.Fatalf("round %d: second callback: %v, fd open %v; want ErrFdClosed on an open fd", round, second.err, second.fdOpen)
				}
				unix.Close(p)
			}
		})
	}
}

// outstandingAtClose records, in OnClose, how many requests its reactor
// still has outstanding.
type outstandingAtClose struct {
	r      *reactor.Reactor
	opened chan *reactor.Conn
	atEnd  chan int64
}

func (h *outstandingAtClose) OnOpen(c *reactor.Conn)             { h.opened <- c }
func (h *outstandingAtClose) OnData(c *reactor.Conn, b []byte)   { c.Write(b) }
func (h *outstandingAtClose) OnClose(_ *reactor.Conn, err error) { h.atEnd <- h.r.Stats().Outstanding }

// TestConnRequestsEndBeforeItsClose: a Conn closed while its read is in
// flight (a receive through the ring, or a readiness poll) has that
// request completed before its fd is closed, so by OnClose the reactor
// has outstanding only what it had before the Conn came: its listening
// socket's. A Conn's requests are found through the Conn, not through a
// list of its fd's (closeConnFd); forgetting one leaves it outstanding
// past the close.
func TestConnRequestsEndBeforeItsClose(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			h := &outstandingAtClose{r: r, opened: make(chan *reactor.Conn, 1), atEnd: make(chan int64, 1)}
			ln := listen(t, r, h, reactor.ListenConfig{})
			waitFor(t, 5*time.Second, "the listener's request", func() bool { return r.Stats().Outstanding > 0 })
			base := r.Stats().Outstanding
			for round := range 5 {
				nc, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				c := <-h.opened
				// An echo first: the read in flight at the close is one
				// that was re-armed, not the first.
				if _, err := nc.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(nc, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				c.CloseNow()
				if got := <-h.atEnd; got != base {
					t.Fatalf("round %d: %d requests outstanding in OnClose, %d before the Conn: its read outlived its close", round, got, base)
				}
				nc.Close()
			}
		})
	}
}

// quietAtEOF keeps a Conn open after the peer's EOF and writes nothing:
// the Conn then has no request in flight at all.
type quietAtEOF struct {
	eof    chan struct{}
	closed chan error
}

func (h *quietAtEOF) OnOpen(*reactor.Conn)               {}
func (h *quietAtEOF) OnData(*reactor.Conn, []byte)       {}
func (h *quietAtEOF) OnEOF(*reactor.Conn)                { h.eof <- struct{}{} }
func (h *quietAtEOF) OnClose(_ *reactor.Conn, err error) { h.closed <- err }

// TestCloseFinishesConnsWithNothingInFlight: the reactor's Close closes
// every Conn, including one that has no request in flight (its peer sent
// EOF, its EOFHandler keeps it open and has nothing to write): OnClose
// runs exactly once, with ErrClosed, and its fd is closed.
func TestCloseFinishesConnsWithNothingInFlight(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			before := openFdSet(t)
			r := newReactor(t, b, 2)
			h := &quietAtEOF{eof: make(chan struct{}, 4), closed: make(chan error, 8)}
			ln := listen(t, r, h, reactor.ListenConfig{})
			ncs := dialN(t, ln.Addr().String(), 4)
			for _, nc := range ncs {
				if _, err := nc.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				if err := nc.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			for range ncs {
				select {
				case <-h.eof:
				case <-time.After(5 * time.Second):
					t.Fatal("OnEOF never came")
				}
			}
			r.Close()
			for i := range ncs {
				select {
				case err := <-h.closed:
					if !errors.Is(err, reactor.ErrClosed) {
						t.Errorf("OnClose err = %v, want ErrClosed", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("OnClose ran for %d of %d Conns", i, len(ncs))
				}
			}
			select {
			case err := <-h.closed:
				t.Fatalf("a second OnClose (%v)", err)
			default:
			}
			for _, nc := range ncs {
				nc.Close() // before the count; dialN's cleanup comes after it
			}
			if l := before.changed(t); len(l) != 0 {
				t.Fatalf("fds opened or closed between before and after Close: %v", l)
			}
		})
	}
}

// TestListenerCloseStopsListeningAtOnce: when a Listener's or a
// NetListener's Close returns, with its accept in flight (on io_uring a
// poll or an accept that holds the file, liburing #932), the port refuses
// the next dial, every round: the loop waits for the kernel to end those
// requests before close(2), and shuts nothing down, so a File copy would
// listen on (TestNetListenerFileAndSyscallConn).
func TestListenerCloseStopsListeningAtOnce(t *testing.T) {
	refused := func(t *testing.T, round int, addr string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("round %d: a dial after Close returned connected: the socket still listens", round)
		}
		if !errors.Is(err, unix.ECONNREFUSED) {
			t.Fatalf("round %d: dial after Close: %v, want connection refused", round, err)
		}
	}
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			for round := range 30 {
				ln, err := r.Listen("tcp", "127.0.0.1:0", &echo{}, reactor.ListenConfig{})
				if err != nil {
					t.Fatal(err)
				}
				addr := ln.Addr().String()
				if round%3 == 0 { // an accept has run: the next is armed again
					c, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					waitFor(t, 5*time.Second, "accepted", func() bool { return ln.Stats().Accepted == 1 })
					c.Close()
				}
				if err := ln.Close(); err != nil {
					t.Fatal(err)
				}
				refused(t, round, addr)
			}
			for round := range 30 {
				nl, err := r.NetListen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr := nl.Addr().String()
				parked := parkAccept(t, r, nl)
				if err := nl.Close(); err != nil {
					t.Fatal(err)
				}
				refused(t, round, addr)
				if err := <-parked; !errors.Is(err, net.ErrClosed) {
					t.Fatalf("round %d: Accept parked across Close: %v, want net.ErrClosed", round, err)
				}
			}
		})
	}
}

// parkAccept parks an Accept on ln, r's only request, and returns what it
// will return (a connection it got is closed).
func parkAccept(t *testing.T, r *reactor.Reactor, ln net.Listener) <-chan error {
	t.Helper()
	parked := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		parked <- err
	}()
	waitFor(t, 5*time.Second, "Accept parked", func() bool { return r.Stats().Outstanding == 1 })
	return parked
}
