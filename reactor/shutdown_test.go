package reactor_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// TestShutdownEchoesWhatWasReceived: 50 connections each send a payload
// and half-read it back; Shutdown must deliver and echo every byte the
// server already received before closing, then return.
func TestShutdownEchoesWhatWasReceived(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			h := &echo{}
			ln, err := r.Listen("tcp", "127.0.0.1:0", h, reactor.ListenConfig{})
			if err != nil {
				t.Fatal(err)
			}
			const n = 50
			// Small enough to fit the server's receive buffer: once the
			// client's kernel holds none of it unacknowledged (SIOCOUTQ 0),
			// it was received, and received is what Shutdown serves.
			payload := make([]byte, 16<<10)
			rand.Read(payload)
			var wg sync.WaitGroup
			errs := make(chan error, n)
			sent := make(chan struct{}, n)
			clients := make([]net.Conn, 0, n)
			for i := 0; i < n; i++ {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				clients = append(clients, c)
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					go func() { c.Write(payload); sent <- struct{}{} }()
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					got, err := io.ReadAll(c) // until the server closes
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, payload) {
						errs <- errors.New("echo lost or changed bytes: " + itoa(len(got)) + " of " + itoa(len(payload)))
					}
				}()
			}
			for i := 0; i < n; i++ {
				<-sent
			}
			waitFor(t, 5*time.Second, "the server's kernel to acknowledge every payload", func() bool {
				for _, c := range clients {
					if unacked(t, c) != 0 {
						return false
					}
				}
				return true // every byte is in the server's receive buffer or already read
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := ln.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if s := ln.Stats(); s.Active != 0 || s.Closed != n {
				t.Fatalf("after Shutdown: %+v", s)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
				t.Fatal("dial after Shutdown succeeded: still accepting")
			}
		})
	}
}

// TestShutdownContextEndsForceCloses: a Conn whose peer never reads cannot
// flush; Shutdown must force-close it when ctx ends and return ctx.Err().
func TestShutdownContextEndsForceCloses(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			h := &connLog{echo: true, closeErrs: make(chan error, 1)}
			// A small MaxPending pauses the Conn within the client's
			// write window however much output the kernel's send buffer
			// takes first (megabytes, as it grows with the window).
			ln := listen(t, r, h, reactor.ListenConfig{MaxPending: 64 << 10})
			c := dial(t, ln)
			// The peer's receive buffer keeps its default size: one of 4
			// KiB, below loopback's 64 KiB segments, made TCP drop the
			// server's segments, window updates with them, and back off
			// for seconds while the client could send nothing (ss: the
			// client rwnd-limited, the server in RTO backoff), so the
			// Conn sometimes never backed up (1 run in 10 under load).
			go func() {
				buf := make([]byte, 64<<10)
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
			waitFor(t, 5*time.Second, "output backed up", func() bool { return ln.Stats().Paused == 1 })
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if err := ln.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
			}
			if s := ln.Stats(); s.Active != 0 || h.closes.Load() != 1 {
				t.Fatalf("after forced Shutdown: %+v, OnClose %d", s, h.closes.Load())
			}
			// Its output was discarded: OnClose must not report a clean close.
			if err := <-h.closeErrs; !errors.Is(err, reactor.ErrClosed) {
				t.Fatalf("OnClose err of a force-closed Conn = %v, want ErrClosed", err)
			}
		})
	}
}

// smallSndbuf is an echo whose Conns get the smallest send buffer, so that
// output backs up (and backpressure pauses reading) after a few KiB.
type smallSndbuf struct{ echo }

func (*smallSndbuf) OnOpen(c *reactor.Conn) {
	unix.SetsockoptInt(c.Fd(), unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<10)
}

// TestShutdownWhilePausedEchoesWhatWasReceived: Shutdown reaching a Conn
// whose reading is paused by backpressure must not begin the drain with
// bytes still unread in its receive buffer: it waits for the peer to drain
// the output, reads the rest, and echoes every byte. Over a Unix socket a
// returned Write means the bytes sit in the server's receive queue.
func TestShutdownWhilePausedEchoesWhatWasReceived(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			ln, err := r.Listen("unix", t.TempDir()+"/s.sock", &smallSndbuf{}, reactor.ListenConfig{MaxPending: 4 << 10})
			if err != nil {
				t.Fatal(err)
			}
			c := dial(t, ln)
			// More than two of the server's 64 KiB reads: one before the
			// pause, one more if Shutdown read past the pause, and a rest.
			payload := make([]byte, 160<<10)
			rand.Read(payload)
			for off := 0; off < len(payload); off += 4 << 10 {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(payload[off : off+4<<10]); err != nil {
					t.Fatalf("write at %d: %v", off, err)
				}
			}
			waitFor(t, 5*time.Second, "backpressure to pause reading", func() bool { return ln.Stats().Paused == 1 })
			shut := make(chan error, 1)
			go func() { shut <- ln.Shutdown(context.Background()) }()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c) // until the server closes
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("echoed %d of %d bytes (equal %v), then %v", len(got), len(payload), bytes.Equal(got, payload), err)
			}
			if err := <-shut; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		})
	}
}

// TestClosedConnsLeaveNoTimers: a Conn's deadline entry leaves its loop's
// heap when the Conn closes. Left to expire (30 s of CloseTimeout after a
// peer EOF, an IdleTimeout later) the entries would hold every closed Conn
// in memory that long: at a high connection rate, without bound.
func TestClosedConnsLeaveNoTimers(t *testing.T) {
	for _, b := range connBackends {
		for _, tc := range []struct {
			name string
			cfg  reactor.ListenConfig
		}{
			{"defaults", reactor.ListenConfig{}},
			{"timeouts", reactor.ListenConfig{IdleTimeout: time.Hour, ReadTimeout: time.Hour}},
		} {
			t.Run(name(b)+"/"+tc.name, func(t *testing.T) {
				r := newReactor(t, b, 1)
				h := &echo{closed: make(chan error, 1)}
				ln := listen(t, r, h, tc.cfg)
				for i := 0; i < 20; i++ {
					c := dial(t, ln)
					c.Write([]byte("x"))
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
						t.Fatal(err)
					}
					c.Close() // peer EOF: the Conn drains (bounded by CloseTimeout) and closes
					if err := <-h.closed; err != nil {
						t.Fatalf("OnClose err = %v", err)
					}
				}
				a, _ := pair(t)
				waitFor(t, 5*time.Second, "the heap to hold nothing of the closed Conns", func() bool {
					r.Arm(a, reactor.Out, func(reactor.Result) {}) // a turn, to refresh Stats
					return r.Stats().Timers == 0
				})
			})
		}
	}
}

// TestShutdownWhilePausedIsBounded: a Conn paused by backpressure whose
// peer never reads holds Shutdown (with no context deadline) no longer than
// CloseTimeout, then closes with an error that says so, and Shutdown
// reports the discarded output (ErrDrainIncomplete) instead of a clean drain.
func TestShutdownWhilePausedIsBounded(t *testing.T) {
	const closeTimeout = 100 * time.Millisecond
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			h := &connLog{echo: true, closeErrs: make(chan error, 1)}
			ln := listen(t, r, h, reactor.ListenConfig{MaxPending: 4 << 10, CloseTimeout: closeTimeout})
			c := dial(t, ln)
			// The peer's receive buffer keeps its default size: see
			// TestShutdownContextEndsForceCloses.
			go func() { // never reads: the echo backs up
				buf := make([]byte, 64<<10)
				// 20 s: the echo must fill the server's send buffer,
				// which the kernel may grow to 4 MiB, before the Conn
				// pauses; under -race with other packages' tests beside
				// it, 5 s was once not enough (Epoll, -count=3).
				c.SetWriteDeadline(time.Now().Add(20 * time.Second))
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
			waitFor(t, 20*time.Second, "backpressure to pause reading", func() bool { return ln.Stats().Paused == 1 })
			start := time.Now()
			shut := make(chan error, 1)
			go func() { shut <- ln.Shutdown(context.Background()) }()
			select {
			case err := <-shut:
				if !errors.Is(err, reactor.ErrDrainIncomplete) {
					t.Fatalf("Shutdown = %v, want ErrDrainIncomplete: a Conn's output was discarded", err)
				}
			case <-time.After(5 * time.Second):
				c.Close() // unblock Shutdown so that the test can end
				<-shut
				t.Fatalf("Shutdown still waiting after 5s on a paused Conn with CloseTimeout %v", closeTimeout)
			}
			if d := time.Since(start); d < closeTimeout {
				t.Fatalf("Shutdown returned after %v, before CloseTimeout", d)
			}
			if err := <-h.closeErrs; !errors.Is(err, reactor.ErrClosed) {
				t.Fatalf("OnClose err = %v, want the CloseTimeout error (wrapping ErrClosed)", err)
			}
		})
	}
}
