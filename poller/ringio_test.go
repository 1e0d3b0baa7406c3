//go:build linux

package poller_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
)

// recvConfigs are the io_uring setups the receive path runs on; epoll has
// none (TestRingIOEpoll).
var recvConfigs = configs[:3]

// recvHarness drives a RingIO and proves its contract: after Recv, each
// tag gets Events with More and then exactly one without, nothing after
// it; every lent buffer is released exactly once (by the harness, after
// copying the bytes); and the bytes come in order.
type recvHarness struct {
	*harness
	rc    poller.RingIO
	got   map[uint64]*bytes.Buffer // bytes each tag received
	ended map[uint64]poller.Event  // each tag's last Event
}

// forEachRecv runs fn as a subtest per io_uring setup (recvConfigs), each
// with buffers consumed incrementally (where the kernel can: Linux 6.12)
// and whole.
func forEachRecv(t *testing.T, fn func(t *testing.T, h *recvHarness)) {
	t.Helper()
	for _, c := range recvConfigs {
		for _, whole := range []bool{false, true} {
			name := c.name
			if whole {
				name += "-whole"
			}
			t.Run(name, func(t *testing.T) { fn(t, newRecvHarness(t, c.opts, whole)) })
		}
	}
}

// recvBufSize is the size of the harness's 8 receive buffers.
const recvBufSize = 256

func newRecvHarness(t *testing.T, opts poller.Options, whole bool) *recvHarness {
	opts.Recv = poller.RecvOptions{Buffers: 8, Size: recvBufSize, Incremental: !whole}
	h := newHarness(t, opts)
	rc, why := poller.RingIOOf(h.p)
	if rc == nil {
		t.Skipf("no receive path: %s", why)
	}
	if !whole && !rc.Incremental() {
		t.Skip("buffers are consumed whole on this kernel (incremental consumption needs Linux 6.12)")
	}
	if whole && rc.Incremental() {
		t.Fatal("RecvOptions asked for whole buffers and the poller consumes them incrementally")
	}
	return &recvHarness{harness: h, rc: rc, got: map[uint64]*bytes.Buffer{}, ended: map[uint64]poller.Event{}}
}

func (h *recvHarness) recv(tag uint64, fd int, multishot bool) {
	h.t.Helper()
	if err := h.rc.Recv(tag, fd, multishot); err != nil {
		h.t.Fatalf("Recv(%#x, %d, %v): %v", tag, fd, multishot, err)
	}
	h.armed[tag] = true
	h.got[tag] = new(bytes.Buffer)
	delete(h.ended, tag)
	delete(h.seen, tag)
}

// poll runs one Wait, checks and records each Event, and releases every
// buffer lent.
func (h *recvHarness) poll(timeout time.Duration) int {
	h.t.Helper()
	n, err := h.p.Wait(h.buf, timeout)
	if err != nil {
		h.t.Fatalf("Wait: %v", err)
	}
	for i := range h.buf[:n] {
		ev := &h.buf[i]
		if ev.HasBuf {
			h.got[ev.Tag].Write(h.rc.Bytes(ev))
			h.rc.Release(ev)
		} else if ev.N != 0 && ev.Events&poller.Out == 0 { // a send's counts what went out
			h.t.Errorf("Event %v counts bytes but lent no buffer", *ev)
		}
		if ev.More {
			if !h.armed[ev.Tag] {
				h.t.Errorf("Event %v for a tag not armed", *ev)
			}
			continue
		}
		h.record(*ev) // the tag's one end: a second fails the test
		h.ended[ev.Tag] = *ev
	}
	return n
}

// receiveUntil polls until tag has received at least n bytes, within 5 s.
func (h *recvHarness) receiveUntil(tag uint64, n int) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.got[tag].Len() < n {
		if !time.Now().Before(deadline) {
			h.t.Fatalf("tag %#x received %d bytes within 5s, want %d", tag, h.got[tag].Len(), n)
		}
		h.poll(time.Until(deadline))
	}
}

// takeLent waits up to 5 s for the next Event and returns it unreleased:
// the caller holds its buffer.
func (h *recvHarness) takeLent() poller.Event {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := h.p.Wait(h.buf[:1], time.Until(deadline))
		if err != nil {
			h.t.Fatalf("Wait: %v", err)
		}
		if n == 1 {
			return h.buf[0]
		}
	}
	h.t.Fatalf("no Event within 5s")
	return poller.Event{}
}

func (h *recvHarness) await(tag uint64) poller.Event {
	h.t.Helper()
	return h.awaitBy(tag, func(d time.Duration) { h.poll(d) })
}

// TestRecvDeliversInOrder: a multishot receive delivers each write in
// order, holds no buffer while it waits, and ends once, at EOF.
func TestRecvDeliversInOrder(t *testing.T) {
	forEachRecv(t, func(t *testing.T, h *recvHarness) {
		a, b := h.pair()
		tag := h.tag()
		h.recv(tag, a, true)
		h.quiet()
		var want bytes.Buffer
		for i := range 40 { // more writes than buffers: each goes back
			msg := []byte(strings.Repeat(string(rune('a'+i%26)), 1+i*13%300))
			want.Write(msg)
			if _, err := unix.Write(b, msg); err != nil {
				t.Fatal(err)
			}
			h.receiveUntil(tag, want.Len())
		}
		if h.rc.Held() != 0 {
			t.Fatalf("Held() = %d after every buffer was released", h.rc.Held())
		}
		h.close(b)
		ev := h.await(tag)
		if ev.Err() != nil || ev.N != 0 || ev.HasBuf {
			t.Fatalf("end at EOF: %v, want Ready with 0 bytes", ev)
		}
		if !bytes.Equal(h.got[tag].Bytes(), want.Bytes()) {
			t.Fatalf("received %d bytes, not the %d written in order", h.got[tag].Len(), want.Len())
		}
	})
}

// TestRecvDisarmLosesNoBytes races Disarm against data arriving: whatever
// the kernel took from the socket before the cancel comes out as bytes
// before the tag's one end, and whatever it did not is still in the
// socket. The two together are exactly what was written.
func TestRecvDisarmLosesNoBytes(t *testing.T) {
	forEachRecv(t, func(t *testing.T, h *recvHarness) {
		rng := rand.New(rand.NewPCG(1, 2))
		canceled, raced := 0, 0 // ended Canceled; of those, with bytes first
		for round := range 200 {
			a, b := h.pair()
			tag := h.tag()
			h.recv(tag, a, true)
			if rng.IntN(2) == 0 {
				h.poll(0) // sometimes the receive is in the kernel first
			}
			var want bytes.Buffer
			for range rng.IntN(4) {
				msg := bytes.Repeat([]byte{byte(round)}, 1+rng.IntN(400))
				want.Write(msg)
				if _, err := unix.Write(b, msg); err != nil {
					t.Fatal(err)
				}
			}
			if rng.IntN(2) == 0 {
				h.poll(0)
			}
			h.p.Disarm(tag)
			ev := h.await(tag)
			if ev.Canceled {
				canceled++
				if h.got[tag].Len() > 0 {
					raced++
				}
			}
			rest := make([]byte, 4096)
			n, _ := unix.Read(a, rest)
			if got := append(h.got[tag].Bytes(), rest[:max(n, 0)]...); !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("round %d (end %v): received %d + left %d bytes, wrote %d", round, ev, h.got[tag].Len(), max(n, 0), want.Len())
			}
			h.close(a)
			h.close(b)
		}
		if h.rc.Held() != 0 {
			t.Fatalf("Held() = %d at the end", h.rc.Held())
		}
		t.Logf("200 rounds: %d ended Canceled, %d of them after delivering bytes", canceled, raced)
	})
}

// TestRecvNoBuffers: with every buffer held by the caller the receive ends
// with ENOBUFS, the data waiting in the socket; armed again after a
// Release it gets them. Each write fills a buffer, so that incremental
// consumption too lends all of them.
func TestRecvNoBuffers(t *testing.T) {
	forEachRecv(t, func(t *testing.T, h *recvHarness) {
		a, b := h.pair()
		tag := h.tag()
		h.recv(tag, a, true)
		var held []poller.Event
		for len(held) < 8 {
			if _, err := unix.Write(b, make([]byte, recvBufSize)); err != nil {
				t.Fatal(err)
			}
			ev := h.takeLent()
			if !ev.HasBuf || !ev.More {
				t.Fatalf("Event %v while buffers remain", ev)
			}
			held = append(held, ev)
		}
		if h.rc.Held() != 8 {
			t.Fatalf("Held() = %d, want 8", h.rc.Held())
		}
		h.write(b)
		ev := h.await(tag)
		if !errors.Is(ev.Err(), unix.ENOBUFS) || ev.HasBuf {
			t.Fatalf("end with every buffer held: %v, want ENOBUFS", ev)
		}
		for i := range held {
			h.rc.Release(&held[i])
		}
		tag2 := h.tag()
		h.recv(tag2, a, true)
		h.receiveUntil(tag2, 1)
		h.p.Disarm(tag2)
		h.await(tag2)
	})
}

// TestRecvHeldBytesStayIntact: bytes a caller holds (an Event not yet
// released) are never written over, however the receives of other
// sockets go on: the kernel gets a buffer back only when nothing of it is
// held, and in an incremental ring only after it named its last piece.
// Eight sockets take turns with writes of 1 to 300 bytes into 8 buffers
// of 256; up to 4 Events are held at a time, each compared with the copy
// made when it came, then released in random order; every socket's bytes
// arrive whole and in order.
func TestRecvHeldBytesStayIntact(t *testing.T) {
	forEachRecv(t, func(t *testing.T, h *recvHarness) {
		rng := rand.New(rand.NewPCG(3, 4))
		type held struct {
			ev   poller.Event
			copy []byte
		}
		var out []held
		release := func(i int) {
			if got := h.rc.Bytes(&out[i].ev); !bytes.Equal(got, out[i].copy) {
				t.Fatalf("held bytes of %v changed before their release: %q, were %q", out[i].ev, got, out[i].copy)
			}
			h.rc.Release(&out[i].ev)
			out = append(out[:i], out[i+1:]...)
		}
		type sock struct {
			a, b int
			tag  uint64
			want bytes.Buffer
		}
		socks := make([]*sock, 8)
		for i := range socks {
			s := &sock{tag: h.tag()}
			s.a, s.b = h.pair()
			h.recv(s.tag, s.a, true)
			socks[i] = s
		}
		ev := make([]poller.Event, 1)
		pieces, ended := 0, 0
		for range 600 {
			s := socks[rng.IntN(len(socks))]
			msg := make([]byte, 1+rng.IntN(300))
			for i := range msg {
				msg[i] = byte(rng.Uint32())
			}
			s.want.Write(msg)
			if _, err := unix.Write(s.b, msg); err != nil {
				t.Fatal(err)
			}
			for h.got[s.tag].Len() < s.want.Len() {
				n, err := h.p.Wait(ev, 5*time.Second)
				if err != nil || n != 1 {
					t.Fatalf("Wait: %d, %v with %d of %d bytes in", n, err, h.got[s.tag].Len(), s.want.Len())
				}
				e := ev[0]
				if e.HasBuf {
					pieces++
					b := h.rc.Bytes(&e)
					h.got[e.Tag].Write(b)
					out = append(out, held{e, bytes.Clone(b)})
				}
				if !e.More { // ENOBUFS, or the kernel's discretion: arm again
					if e.Err() != nil && !errors.Is(e.Err(), unix.ENOBUFS) {
						t.Fatalf("receive ended with %v", e)
					}
					ended++
					for len(out) > 0 {
						release(rng.IntN(len(out)))
					}
					if err := h.rc.Recv(e.Tag, socks[int(e.Tag-socks[0].tag)].a, true); err != nil {
						t.Fatalf("Recv again after %v: %v", e, err)
					}
				}
				for len(out) > 4 || (len(out) > 0 && rng.IntN(3) == 0) {
					release(rng.IntN(len(out)))
				}
			}
		}
		for len(out) > 0 {
			release(0)
		}
		for _, s := range socks {
			if !bytes.Equal(h.got[s.tag].Bytes(), s.want.Bytes()) {
				t.Fatalf("tag %#x received %d bytes, not the %d written in order", s.tag, h.got[s.tag].Len(), s.want.Len())
			}
			h.p.Disarm(s.tag)
			h.await(s.tag)
		}
		if h.rc.Held() != 0 {
			t.Fatalf("Held() = %d at the end", h.rc.Held())
		}
		t.Logf("%d pieces, %d receives ended and armed again", pieces, ended)
	})
}

// TestRecvForgetAndClose: Forget ends a waiting receive before its fd is
// closed (the ring holds the file otherwise), and Close ends what is left.
func TestRecvForgetAndClose(t *testing.T) {
	forEachRecv(t, func(t *testing.T, h *recvHarness) {
		a, b := h.pair()
		tag := h.tag()
		h.recv(tag, a, true)
		h.poll(0)
		h.p.Forget(a)
		h.close(a)
		if ev := h.await(tag); !ev.Canceled {
			t.Fatalf("end after Forget: %v, want Canceled", ev)
		}
		h.expectEOF(b)
		// One left armed for Close: the harness's finish disarms it.
		c2, _ := h.pair()
		h.recv(h.tag(), c2, true)
	})
}

// TestRecvReleaseTwicePanics: a buffer goes back once.
func TestRecvReleaseTwicePanics(t *testing.T) {
	h := newRecvHarness(t, recvConfigs[0].opts, true)
	a, b := h.pair()
	tag := h.tag()
	h.recv(tag, a, true)
	h.write(b)
	ev := h.takeLent()
	if !ev.HasBuf {
		t.Fatalf("Event %v lent no buffer", ev)
	}
	cp := ev
	h.rc.Release(&ev)
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("second Release of one buffer did not panic")
		}
		h.p.Disarm(tag)
		h.harness.await(tag)
	}()
	h.rc.Release(&cp)
}

// TestRecvOnce: a receive armed without multishot ends with its first
// buffer, leaving the rest in the socket; armed again and again it reads
// everything, in order, and ends at EOF.
func TestRecvOnce(t *testing.T) {
	forEachRecv(t, func(t *testing.T, h *recvHarness) {
		a, b := h.pair()
		want := bytes.Repeat([]byte("0123456789"), 200) // 2000 bytes: 8 buffers of 256
		if _, err := unix.Write(b, want); err != nil {
			t.Fatal(err)
		}
		h.close(b)
		var got bytes.Buffer
		ends := 0
		for {
			tag := h.tag()
			h.recv(tag, a, false)
			ev := h.await(tag)
			ends++
			got.Write(h.got[tag].Bytes())
			if ev.Err() != nil {
				t.Fatalf("end %d: %v", ends, ev)
			}
			if ev.N == 0 {
				break
			}
			if ev.More || h.got[tag].Len() != int(ev.N) || ev.N > 256 {
				t.Fatalf("one-shot receive's end %v: want one buffer, no More", ev)
			}
		}
		if !bytes.Equal(got.Bytes(), want) || ends < 8 {
			t.Fatalf("%d receives read %d bytes (in order: %v); want 2000 in at least 8", ends, got.Len(), bytes.Equal(got.Bytes(), want))
		}
	})
}

// TestRecvAtMost: a receive with a limit takes no more than it from the
// socket whatever the buffer size (256 here), in order, each time into a
// whole buffer (never a piece of an incremental one); a limit of zero or
// beyond 32 bits is refused, arming nothing.
func TestRecvAtMost(t *testing.T) {
	forEachRecv(t, func(t *testing.T, h *recvHarness) {
		a, b := h.pair()
		want := bytes.Repeat([]byte("abcdefghij"), 60) // 600 bytes
		if _, err := unix.Write(b, want); err != nil {
			t.Fatal(err)
		}
		h.close(b)
		var got bytes.Buffer
		for i, max := 0, 7; ; i, max = i+1, max*3 {
			tag := h.tag()
			if err := h.rc.RecvAtMost(tag, a, max); err != nil {
				t.Fatalf("RecvAtMost(%d): %v", max, err)
			}
			h.armed[tag] = true
			h.got[tag] = new(bytes.Buffer)
			ev := h.await(tag)
			if ev.Err() != nil || ev.More {
				t.Fatalf("receive %d: %v", i, ev)
			}
			if ev.N == 0 {
				break
			}
			if n := h.got[tag].Len(); n != int(ev.N) || n > max || n > 256 {
				t.Fatalf("receive %d of at most %d: %d bytes (Event says %d)", i, max, n, ev.N)
			}
			if ev.Off != 0 {
				// A limited receive must not take a piece of an
				// incremental buffer (ring.BufRing): it gets a whole one.
				t.Fatalf("receive %d of at most %d: bytes at %d in their buffer, want a whole buffer", i, max, ev.Off)
			}
			got.Write(h.got[tag].Bytes())
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("read %d bytes, not the 600 written in order", got.Len())
		}
		for _, max := range []int{0, -1, 1 << 33} {
			if err := h.rc.RecvAtMost(h.tag(), a, max); err == nil {
				t.Fatalf("RecvAtMost(%d) armed", max)
			}
		}
		h.quiet()
	})
}

// send queues b on fd under a fresh tag, recorded by the harness.
func (h *recvHarness) send(fd int, b []byte) uint64 {
	h.t.Helper()
	tag := h.tag()
	if err := h.rc.Send(tag, fd, b); err != nil {
		h.t.Fatalf("Send(%#x, %d): %v", tag, fd, err)
	}
	h.armed[tag] = true
	h.got[tag] = new(bytes.Buffer)
	return tag
}

// TestSendThroughRing: a Send's one Event counts the bytes the peer then
// reads; a Send to a full socket waits in the kernel, comes out once the
// peer makes room, and one Disarmed while it waits ends Canceled having
// sent nothing.
func TestSendThroughRing(t *testing.T) {
	forEachRecv(t, func(t *testing.T, h *recvHarness) {
		a, b := h.pair()
		msg := []byte("through the ring")
		if ev := h.await(h.send(a, msg)); ev.Err() != nil || int(ev.N) != len(msg) {
			t.Fatalf("send: %v, want Ready with %d bytes", ev, len(msg))
		}
		buf := make([]byte, 1<<20)
		if n, _ := unix.Read(b, buf); string(buf[:n]) != string(msg) {
			t.Fatalf("peer read %q", buf[:n])
		}
		h.fill(a)
		waiting := h.send(a, msg)
		h.quiet()
		h.drain(b)
		if ev := h.await(waiting); ev.Err() != nil || ev.N < 1 {
			t.Fatalf("send after room was made: %v", ev)
		}
		h.drain(b)
		h.fill(a)
		canceled := h.send(a, []byte("never"))
		h.quiet()
		h.p.Disarm(canceled)
		if ev := h.await(canceled); !ev.Canceled {
			t.Fatalf("Disarmed send: %v, want Canceled", ev)
		}
		h.drain(b)
		if n, _ := unix.Read(b, buf); n > 0 {
			t.Fatalf("peer read %d bytes after the canceled send's", n)
		}
		if err := h.rc.Send(h.tag(), a, nil); err == nil {
			t.Fatal("Send of nothing accepted")
		}
	})
}
