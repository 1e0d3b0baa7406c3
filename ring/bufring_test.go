//go:build linux

package ring_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/ring"
)

// recvRing sets up a ring with a registered buffer ring, skipping where the
// kernel has no buffer rings or no multishot RECV.
func recvRing(t *testing.T, count, size int) (*ring.Ring, *ring.BufRing) {
	t.Helper()
	r := newRing(t, ring.Config{Entries: 16})
	p, err := r.Probe()
	if err != nil {
		t.Skipf("probe: %v", err)
	}
	if !ring.SupportsRecvMultishot(p) {
		t.Skip("kernel without multishot RECV (Linux 6.0)")
	}
	b, err := r.RegisterBufRing(3, count, size)
	if errors.Is(err, ring.ErrBufRingUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return r, b
}

// TestRecvMultishotBufRing: one multishot RECV delivers each write in a
// buffer of its own, named by the CQE, stays armed (CQEFMore) while
// buffers remain, ends with ENOBUFS when the owner holds them all, and
// after Put the kernel fills the buffers again. EOF ends it with Res 0.
func TestRecvMultishotBufRing(t *testing.T) {
	r, b := recvRing(t, 2, 64)
	a, peer := socketpair(t)
	arm := func() { prep(t, r, func(s *ring.SQE) { s.PrepRecvSelect(int32(a), b.Group(), true, 9) }) }
	arm()
	assertNoCQE(t, r, "recv before the peer wrote")
	if b.Held() != 0 {
		t.Fatalf("a waiting recv holds %d buffers", b.Held())
	}
	var got [][]byte
	var ids []uint16
	for _, msg := range []string{"first", "second"} {
		if _, err := unix.Write(peer, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		c := waitCQEs(t, r, 1)[0]
		id, ok := c.Buffer()
		if c.UserData != 9 || !ok || !c.More() || int(c.Res) != len(msg) {
			t.Fatalf("CQE %+v for %q: want user_data 9, a buffer, F_MORE, Res %d", c, msg, len(msg))
		}
		got = append(got, bytes.Clone(b.Take(id, int(c.Res))))
		ids = append(ids, id)
	}
	if string(got[0]) != "first" || string(got[1]) != "second" || ids[0] == ids[1] {
		t.Fatalf("received %q in buffers %v", got, ids)
	}
	// Both buffers held: the next receive finds none and ends the request.
	if _, err := unix.Write(peer, []byte("third")); err != nil {
		t.Fatal(err)
	}
	c := waitCQEs(t, r, 1)[0]
	if c.Res != -int32(unix.ENOBUFS) || c.More() {
		t.Fatalf("CQE %+v with every buffer held: want -ENOBUFS, the last", c)
	}
	for _, id := range ids {
		b.Put(id)
	}
	arm()
	c = waitCQEs(t, r, 1)[0]
	id, ok := c.Buffer()
	if !ok || string(b.Take(id, int(c.Res))) != "third" {
		t.Fatalf("after Put: CQE %+v", c)
	}
	b.Put(id)
	unix.Shutdown(peer, unix.SHUT_WR)
	c = waitCQEs(t, r, 1)[0]
	if _, ok := c.Buffer(); c.Res != 0 || c.More() || ok {
		t.Fatalf("CQE %+v at EOF: want Res 0, no buffer, the last", c)
	}
	if b.Held() != 0 {
		t.Fatalf("%d buffers held at the end", b.Held())
	}
}

// TestRecvSelectMax: a one-shot RECV with a max takes no more than that
// from the socket, although its buffer is larger; the rest stays queued
// for the next receive, and a max beyond the buffer is cut to the buffer.
func TestRecvSelectMax(t *testing.T) {
	r, b := recvRing(t, 2, 64)
	a, peer := socketpair(t)
	// POLL_FIRST on an empty socket waits for the bytes.
	prep(t, r, func(s *ring.SQE) { s.PrepRecvSelectMax(int32(a), b.Group(), 8, true, 7) })
	assertNoCQE(t, r, "a poll-first recv on an empty socket")
	if _, err := unix.Write(peer, []byte("ab")); err != nil {
		t.Fatal(err)
	}
	c := waitCQEs(t, r, 1)[0]
	if id, ok := c.Buffer(); !ok || c.UserData != 7 || string(b.Take(id, int(c.Res))) != "ab" {
		t.Fatalf("poll-first recv after a write: CQE %+v", c)
	} else {
		b.Put(id)
	}
	if _, err := unix.Write(peer, []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		max  uint32
		want string
	}{{4, "0123"}, {1000, "456789"}} {
		prep(t, r, func(s *ring.SQE) { s.PrepRecvSelectMax(int32(a), b.Group(), tc.max, i == 1, uint64(i+1)) })
		c := waitCQEs(t, r, 1)[0]
		id, ok := c.Buffer()
		if !ok || c.More() || c.UserData != uint64(i+1) {
			t.Fatalf("max %d: CQE %+v: want a buffer, the last", tc.max, c)
		}
		if got := string(b.Take(id, int(c.Res))); got != tc.want {
			t.Fatalf("max %d: received %q, want %q", tc.max, got, tc.want)
		}
		b.Put(id)
	}
	big := bytes.Repeat([]byte{'x'}, 100)
	if _, err := unix.Write(peer, big); err != nil {
		t.Fatal(err)
	}
	prep(t, r, func(s *ring.SQE) { s.PrepRecvSelectMax(int32(a), b.Group(), 1000, true, 3) })
	c = waitCQEs(t, r, 1)[0]
	id, ok := c.Buffer()
	if !ok || c.Res != 64 {
		t.Fatalf("max 1000, buffers of 64, 100 bytes queued: CQE %+v, want Res 64", c)
	}
	b.Take(id, int(c.Res))
	b.Put(id)
	var rest [64]byte
	if n, err := unix.Read(a, rest[:]); err != nil || n != 36 {
		t.Fatalf("after a receive of 64: read %d, %v; want the other 36 still queued", n, err)
	}
}

// TestRecvCancel: a multishot RECV canceled while it waits ends with one
// -ECANCELED CQE and took no buffer.
func TestRecvCancel(t *testing.T) {
	r, b := recvRing(t, 4, 64)
	a, _ := socketpair(t)
	prep(t, r, func(s *ring.SQE) { s.PrepRecvSelect(int32(a), b.Group(), true, 5) })
	assertNoCQE(t, r, "recv before the peer wrote")
	prep(t, r, func(s *ring.SQE) { s.PrepCancel(5, 0, 6) })
	cs := waitCQEs(t, r, 2)
	for _, c := range cs {
		switch c.UserData {
		case 5:
			if c.Res != -int32(unix.ECANCELED) || c.More() {
				t.Fatalf("recv CQE %+v: want -ECANCELED, the last", c)
			}
		case 6:
			if c.Res != 0 {
				t.Fatalf("cancel CQE %+v: want 0", c)
			}
		}
	}
	if b.Held() != 0 {
		t.Fatalf("%d buffers held", b.Held())
	}
}

// TestBufRingOwnership: Take and Put enforce who holds a buffer.
func TestBufRingOwnership(t *testing.T) {
	_, b := recvRing(t, 4, 64)
	mustPanic := func(what, want string, f func()) {
		t.Helper()
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(r.(string), want) {
				t.Fatalf("%s: panic %v, want one saying %q", what, r, want)
			}
		}()
		f()
	}
	mustPanic("Put of a buffer never taken", "does not hold", func() { b.Put(1) })
	b.Take(1, 10)
	mustPanic("Take twice", "taken twice", func() { b.Take(1, 10) })
	b.Put(1)
	mustPanic("Put twice", "does not hold", func() { b.Put(1) })
	mustPanic("Take past the size", "outside", func() { b.Take(2, 65) })
	mustPanic("Take past the count", "outside", func() { b.Take(4, 1) })
}

// TestRegisterBufRingArgs refuses sizes the kernel would misread.
func TestRegisterBufRingArgs(t *testing.T) {
	r := newRing(t, ring.Config{Entries: 4})
	for _, tc := range []struct{ count, size int }{{0, 64}, {3, 64}, {1 << 16, 64}, {4, 0}, {4, 1<<30 + 1}} {
		if b, err := r.RegisterBufRing(1, tc.count, tc.size); err == nil {
			b.Close()
			t.Errorf("RegisterBufRing(count %d, size %d) accepted", tc.count, tc.size)
		}
	}
}

// TestSend: a SEND's CQE counts the bytes the peer then reads.
func TestSend(t *testing.T) {
	r := newRing(t, ring.Config{Entries: 4})
	a, peer := socketpair(t)
	msg := []byte("through the ring")
	prep(t, r, func(s *ring.SQE) { s.PrepSend(int32(a), msg, 0, 4) })
	c := waitCQEs(t, r, 1)[0]
	if c.UserData != 4 || int(c.Res) != len(msg) {
		t.Fatalf("send CQE %+v, want Res %d", c, len(msg))
	}
	buf := make([]byte, 64)
	n, err := unix.Read(peer, buf)
	if err != nil || string(buf[:n]) != string(msg) {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}
}
