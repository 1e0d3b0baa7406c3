package poller_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
)

// TestSettleReleasesFile: after Forget or Disarm and Settle, close(2)
// releases the file at once, though an io_uring poll held it (liburing
// #932): a socketpair's peer reads end of file with no wait, and a
// listening socket refuses the next dial. Without Settle the closed
// socketpair end lives on until a later Wait hands the cancel over, and
// the listening socket completes handshakes. The disarmed tag's one Event
// still comes, from the next Wait.
func TestSettleReleasesFile(t *testing.T) {
	for _, how := range []string{"forget", "disarm"} {
		t.Run(how, func(t *testing.T) {
			forEach(t, func(t *testing.T, h *harness) {
				let := func(fd int, tag uint64) {
					h.t.Helper()
					if how == "forget" {
						h.p.Forget(fd)
					} else if !h.p.Disarm(tag) {
						t.Fatalf("Disarm(%#x) = false for an armed tag", tag)
					}
					if err := h.p.Settle(5 * time.Second); err != nil {
						t.Fatalf("Settle: %v", err)
					}
				}
				for round := range 20 {
					a, b := h.pair()
					tag := h.tag()
					h.arm(tag, a, poller.In)
					if round%2 == 1 {
						h.poll(0) // in the kernel, not just queued
					}
					let(a, tag)
					h.close(a)
					var buf [1]byte
					if n, err := unix.Read(b, buf[:]); n != 0 || err != nil {
						t.Fatalf("round %d: the peer reads %d, %v right after the close; want end of file: the file outlived close(2)", round, n, err)
					}
					if ev := h.await(tag); !ev.Canceled {
						t.Fatalf("round %d: %v, want canceled", round, ev)
					}
					h.close(b)
				}
				// A listening socket stops listening with its close.
				for round := range 5 {
					ln, sa := openTCPListener(t, func(fd int) { h.open[fd] = true })
					addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}
					tag := h.tag()
					h.arm(tag, ln, poller.In)
					h.poll(0)
					let(ln, tag)
					h.close(ln)
					if c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second); err == nil {
						c.Close()
						t.Fatalf("round %d: a dial after the close connected: the socket still listens", round)
					} else if !errors.Is(err, unix.ECONNREFUSED) {
						t.Fatalf("round %d: dial after the close: %v, want connection refused", round, err)
					}
					if ev := h.await(tag); !ev.Canceled {
						t.Fatalf("round %d: %v, want canceled", round, ev)
					}
				}
			})
		})
	}
}

// TestSettleIdleIsFree: with nothing disarmed Settle makes no system call,
// so a caller may Settle before every close it needs to be prompt.
func TestSettleIdleIsFree(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		tag := h.tag()
		h.arm(tag, a, poller.In)
		h.poll(0)
		h.write(b)
		if ev := h.await(tag); ev.Events&poller.In == 0 {
			t.Fatalf("%v, want ready In", ev)
		}
		before := h.p.Stats().Syscalls
		if err := h.p.Settle(time.Second); err != nil {
			t.Fatalf("Settle: %v", err)
		}
		if got := h.p.Stats().Syscalls - before; got != 0 {
			t.Fatalf("Settle with nothing disarmed made %d system calls", got)
		}
	})
}
