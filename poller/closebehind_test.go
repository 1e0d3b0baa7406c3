package poller_test

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
)

// TestArmAfterCloseBehindBackSameFile: fd closed without Forget while its
// file lives on (dup, fork); epoll's DEL then fails (EBADF), leaving the
// kernel's registration, keyed by file and number, in the set. When the
// number names the same file again, arms on it must work: epoll's ADD
// finds the old registration (EEXIST), which failed that arm and every
// later one on the fd before takeOver. A level arm's registration goes
// with its last tag, an Edge one with Forget.
func TestArmAfterCloseBehindBackSameFile(t *testing.T) {
	for _, mode := range []struct {
		name string
		in   uint32
	}{{"level", poller.In}, {"edge", edgeIn}} {
		in := mode.in
		t.Run(mode.name, func(t *testing.T) {
			forEach(t, func(t *testing.T, h *harness) {
				a, b := h.pair()
				keep, err := unix.Dup(a)
				if err != nil {
					t.Fatal(err)
				}
				h.open[keep] = true
				old := h.tag()
				h.arm(old, a, in)
				h.poll(0)
				h.close(a) // behind the poller's back; the file lives on in keep
				if !h.p.Disarm(old) {
					t.Fatal("Disarm = false")
				}
				if ev := h.await(old); !ev.Canceled {
					t.Fatalf("old: %v, want canceled", ev)
				}
				h.p.Forget(a)   // an Edge registration's end; for a level one, nothing is left
				h.dup2(keep, a) // the number names the same file again
				for i := range 2 {
					fresh := h.tag()
					h.arm(fresh, a, in)
					h.poll(0)
					h.write(b)
					ev := h.await(fresh)
					h.drain(a)
					if ev.Events&poller.In == 0 {
						t.Fatalf("arm %d on the live fd: %v, want ready In", i, ev)
					}
				}
			})
		})
	}
}

// Events harvested in one epoll_wait but not yet returned (a Wait buffer
// smaller than the batch): Disarm and Forget of those tags must not add a
// second Event, and none is lost.
func TestDisarmHarvestedNotReturned(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		var tags []uint64
		var fds []int
		for i := 0; i < 6; i++ {
			a, b := h.pair()
			h.write(b)
			tag := h.tag()
			h.arm(tag, a, poller.In)
			tags = append(tags, tag)
			fds = append(fds, a)
		}
		small := make([]poller.Event, 1)
		var n int
		for n == 0 {
			k, err := h.p.Wait(small, 100e6)
			if err != nil {
				t.Fatal(err)
			}
			n = k
		}
		h.record(small[0])
		for i, tag := range tags {
			if tag == small[0].Tag {
				continue
			}
			if i%2 == 0 {
				h.p.Disarm(tag)
			} else {
				h.p.Forget(fds[i])
			}
		}
		for _, tag := range tags {
			h.await(tag)
		}
		h.quiet()
	})
}

// Level registrations report Hup and Err unasked, to a reader and a writer.
func TestLevelHupErr(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		h.fill(a)
		w := h.tag()
		h.arm(w, a, poller.Out)
		h.poll(0)
		h.close(b)
		if ev := h.await(w); ev.Events&poller.Hup == 0 {
			t.Fatalf("writer after peer close: %v, want Hup", ev)
		}
		// A UDP socket with a pending error (connected, ICMP refused).
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		h.open[s] = true
		dead, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		unix.Bind(dead, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
		sa, _ := unix.Getsockname(dead)
		unix.Close(dead)
		if err := unix.Connect(s, sa); err != nil {
			t.Fatal(err)
		}
		r := h.tag()
		h.arm(r, s, poller.In)
		h.poll(0)
		unix.Write(s, []byte("x"))
		if ev := h.await(r); ev.Events&poller.Err == 0 {
			t.Fatalf("reader on a refused UDP socket: %v, want Err", ev)
		}
	})
}

// A reader and a writer on one fd: the reader fires many times, the writer
// (blocked on a full buffer) stays armed through each re-arm and fires once
// the peer drains.
func TestWriterSurvivesReaderFires(t *testing.T) {
	forEach(t, func(t *testing.T, h *harness) {
		a, b := h.pair()
		h.fill(a)
		w := h.tag()
		h.arm(w, a, poller.Out)
		for i := 0; i < 20; i++ {
			r := h.tag()
			h.arm(r, a, poller.In)
			h.poll(0)
			h.write(b)
			if ev := h.await(r); ev.Events != poller.In {
				t.Fatalf("reader: %v", ev)
			}
			h.drain(a)
			if _, ok := h.seen[w]; ok {
				t.Fatalf("writer fired while the buffer is full: %v", h.seen[w])
			}
		}
		h.drain(b)
		if ev := h.await(w); ev.Events != poller.Out {
			t.Fatalf("writer: %v", ev)
		}
	})
}
