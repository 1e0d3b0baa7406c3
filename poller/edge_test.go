//go:build linux

package poller_test

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
)

// edgeIn is a reader's interest under the Edge promise: armed after EAGAIN.
const edgeIn = poller.In | poller.Edge

// TestEdgeNoLostWakeup: under the Edge promise (arm after EAGAIN, Forget
// before close) a byte that arrives between the caller's EAGAIN and its arm
// is never lost, whether the poller has looked at the kernel in between
// (epoll: the edge fired with no tag armed and is kept) or not; a byte
// that arrives after the arm wakes it; and a fd with nothing to read stays
// quiet. Ready never reports Edge. Both backends: io_uring ignores the
// promise and must meet the same.
func TestEdgeNoLostWakeup(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		for round, order := range []string{"write, arm, wait", "write, wait, arm", "arm, write, wait", "arm, wait"} {
			tag := h.tag()
			switch order {
			case "write, arm, wait":
				h.write(b)
				h.arm(tag, a, edgeIn)
			case "write, wait, arm":
				h.write(b)
				h.poll(0) // epoll harvests the edge with no tag armed
				h.arm(tag, a, edgeIn)
			case "arm, write, wait":
				h.arm(tag, a, edgeIn)
				h.write(b)
			case "arm, wait":
				h.arm(tag, a, edgeIn)
				h.quiet()
				h.write(b)
			}
			ev := h.await(tag)
			if ev.Events&poller.In == 0 || ev.Events&poller.Edge != 0 {
				t.Fatalf("round %d (%s): %v, want In without Edge", round, order, ev)
			}
			h.drain(a) // the caller's read, to EAGAIN, before its next arm
		}
		tag := h.tag()
		h.arm(tag, a, edgeIn)
		h.quiet()
		if !h.p.Disarm(tag) {
			t.Fatal("Disarm of a waiting Edge tag = false")
		}
		if ev := h.await(tag); !ev.Canceled {
			t.Fatalf("Disarmed Edge tag: %v, want Canceled", ev)
		}
		h.p.Forget(a)
	})
}

// TestEdgeArmsWithoutSyscalls: on epoll an Edge registration is made once
// (one epoll_ctl) and then serves arm after arm, and Disarm, with no
// system call of its own; a reader and a writer share it.
func TestEdgeArmsWithoutSyscalls(t *testing.T) {
	h := newHarness(t, poller.Options{Backend: poller.Epoll})
	a, b := h.pair()
	armOnly := func(tag uint64, events uint32) uint64 {
		before := h.p.Stats().Syscalls
		h.arm(tag, a, events)
		return h.p.Stats().Syscalls - before
	}
	tag := h.tag()
	if n := armOnly(tag, edgeIn); n != 1 {
		t.Fatalf("first Edge arm made %d system calls, want 1 (the registration)", n)
	}
	h.write(b)
	for range 3 {
		h.await(tag)
		h.drain(a)
		tag = h.tag()
		if n := armOnly(tag, edgeIn); n != 0 {
			t.Fatalf("Edge re-arm made %d system calls, want none", n)
		}
		h.write(b)
	}
	h.await(tag)
	h.drain(a)
	w := h.tag()
	if n := armOnly(w, poller.Out|poller.Edge); n != 0 {
		t.Fatalf("a writer's Edge arm on the reader's registration made %d system calls", n)
	}
	// The registration reported Out when it was made, with no writer
	// armed: kept, it decides the writer's arm at once (a Ready the
	// caller's next write checks).
	if ev := h.await(w); ev.Events&poller.Out == 0 {
		t.Fatalf("writer: %v, want Out", ev)
	}
	r := h.tag()
	armOnly(r, edgeIn)
	before := h.p.Stats().Syscalls
	if !h.p.Disarm(r) {
		t.Fatal("Disarm = false")
	}
	if n := h.p.Stats().Syscalls - before; n != 0 {
		t.Fatalf("Disarm of an Edge tag made %d system calls", n)
	}
	h.await(r)
	h.p.Forget(a)
}

// TestEdgeHangupStays: a hang-up that one direction's wake-up reported
// also decides the other direction's later arm, with Hup: it is a state,
// not an edge. And an arm without the promise on an Edge registration
// polls the level, so a fd whose bytes arrived before it (their edge long
// taken) is Ready.
func TestEdgeHangupStays(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		tag := h.tag()
		h.arm(tag, a, edgeIn)
		h.write(b)
		h.await(tag) // the edge is taken; the byte stays unread
		level := h.tag()
		h.arm(level, a, poller.In)
		if ev := h.await(level); ev.Events&poller.In == 0 {
			t.Fatalf("level arm with a byte unread: %v, want In", ev)
		}
		h.drain(a)
		h.fill(a) // the writer's EAGAIN
		r := h.tag()
		h.arm(r, a, edgeIn)
		h.close(b)
		if ev := h.await(r); ev.Events&poller.Hup == 0 {
			t.Fatalf("reader after the peer closed: %v, want Hup", ev)
		}
		w := h.tag()
		h.arm(w, a, poller.Out|poller.Edge)
		if ev := h.await(w); ev.Events&poller.Hup == 0 {
			t.Fatalf("writer armed after the reader took the hang-up: %v, want Hup", ev)
		}
		h.p.Forget(a)
	})
}

// TestEdgeErrorPassesOnce: a socket error wakes the Edge arm waiting then;
// once the caller has read it (the error clears) and found EAGAIN, the
// next Edge arm waits. An error kept for good would wake every later arm
// at once: a spin. A connected UDP socket gets ECONNREFUSED from the ICMP
// answer to a datagram sent to a closed port.
func TestEdgeErrorPassesOnce(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		u := udpToClosedPort(t, h)
		var buf [16]byte
		if _, err := unix.Read(u, buf[:]); err != unix.EAGAIN {
			t.Fatalf("read on a fresh UDP socket: %v, want EAGAIN", err)
		}
		tag := h.tag()
		h.arm(tag, u, edgeIn)
		if _, err := unix.Write(u, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if ev := h.await(tag); ev.Events&poller.Err == 0 {
			t.Fatalf("after ICMP port unreachable: %v, want Err", ev)
		}
		if _, err := unix.Read(u, buf[:]); err != unix.ECONNREFUSED {
			t.Fatalf("read after Err: %v, want ECONNREFUSED", err)
		}
		if _, err := unix.Read(u, buf[:]); err != unix.EAGAIN {
			t.Fatalf("read after the error: %v, want EAGAIN", err)
		}
		tag = h.tag()
		h.arm(tag, u, edgeIn)
		h.quiet()
		h.p.Disarm(tag)
		h.await(tag)
		h.p.Forget(u)
	})
}

// udpToClosedPort returns a nonblocking UDP socket connected to a loopback
// port nothing listens on, owned by the harness.
func udpToClosedPort(t *testing.T, h *harness) int {
	t.Helper()
	probe, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	lo := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(probe, lo); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(probe)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(probe) // the port is free, and closed, now
	u, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.open[u] = true
	if err := unix.Connect(u, sa); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestEdgeForgetThenReuse: after Forget and close, the fd number taken by
// a new socket gets a registration of its own: an Edge arm on it waits for
// the new socket's bytes, and the old socket's edges never reach it.
func TestEdgeForgetThenReuse(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		tag := h.tag()
		h.arm(tag, a, edgeIn)
		h.write(b) // pending on the old registration once harvested
		h.await(tag)
		h.p.Forget(a)
		h.close(a)
		c, d := h.pair()
		if c != a && d != a {
			h.dup2(c, a) // the number names the new socket now
		}
		fresh := h.tag()
		h.arm(fresh, a, edgeIn)
		h.quiet()
		if d == a {
			d = c
		}
		h.write(d)
		if ev := h.await(fresh); ev.Events&poller.In == 0 {
			t.Fatalf("Edge arm on the reused number: %v, want In", ev)
		}
		h.p.Forget(a)
	})
}

// TestEdgeAfterLevelWait: a fd first waited on without the promise (a
// connect's wait for Out) keeps an idle level registration; the first
// Edge arm turns it into an edge one (one epoll_ctl), and the arms after
// it need none. A wake-up that came before the switch is not lost.
func TestEdgeAfterLevelWait(t *testing.T) {
	h := newHarness(t, poller.Options{Backend: poller.Epoll})
	a, b := h.pair()
	tag := h.tag()
	h.arm(tag, a, poller.Out)
	h.await(tag) // ONESHOT fired: the registration is idle
	h.write(b)   // arrives while nothing is enabled
	before := h.p.Stats().Syscalls
	tag = h.tag()
	h.arm(tag, a, edgeIn)
	if n := h.p.Stats().Syscalls - before; n != 1 {
		t.Fatalf("the switch to edge made %d system calls, want 1", n)
	}
	if ev := h.await(tag); ev.Events&poller.In == 0 {
		t.Fatalf("the byte written before the switch: %v, want In", ev)
	}
	h.drain(a)
	before = h.p.Stats().Syscalls
	tag = h.tag()
	h.arm(tag, a, edgeIn)
	if n := h.p.Stats().Syscalls - before; n != 0 {
		t.Fatalf("an Edge arm after the switch made %d system calls", n)
	}
	h.write(b)
	if ev := h.await(tag); ev.Events&poller.In == 0 {
		t.Fatalf("after the switch: %v, want In", ev)
	}
	h.p.Forget(a)
}

// TestEpollRefusesTheTagThatWouldOverflow: epoll counts an fd's tags per
// event in 16 bits. The 65,536th tag asking for In on one fd is refused
// with ErrTooManyTags, leaving the others armed and the count whole: a tag
// for Out is still taken, and once one In tag ends another is. (io_uring
// keeps no such count.)
func TestEpollRefusesTheTagThatWouldOverflow(t *testing.T) {
	for _, b := range []poller.Backend{poller.Epoll} {
		t.Run(string(b), func(t *testing.T) {
			h := newHarness(t, poller.Options{Backend: b})
			a, _ := h.pair()
			const most = 1<<16 - 1
			for i := range most {
				h.arm(uint64(i+1), a, poller.In)
			}
			if err := h.p.Arm(most+1, a, poller.In); !errors.Is(err, poller.ErrTooManyTags) {
				t.Fatalf("tag %d: %v, want ErrTooManyTags", most+1, err)
			}
			h.arm(most+2, a, poller.Out) // counted apart: taken
			if ev := h.await(most + 2); ev.Events&poller.Out == 0 {
				t.Fatalf("the Out tag: %v", ev)
			}
			h.p.Disarm(1)
			h.await(1)
			h.arm(most+3, a, poller.In)
			for tag := range h.armed {
				h.p.Disarm(tag)
			}
			for h.p.Stats().Armed > 0 {
				h.poll(10 * time.Millisecond)
			}
		})
	}
}
