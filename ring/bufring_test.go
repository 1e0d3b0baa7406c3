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
	return recvRingFlags(t, count, size, 0)
}

// recvRingFlags is recvRing with flags, skipping where the kernel lacks
// what they ask for.
func recvRingFlags(t *testing.T, count, size int, flags ring.BufRingFlags) (*ring.Ring, *ring.BufRing) {
	t.Helper()
	r := newRing(t, ring.Config{Entries: 16})
	p, err := r.Probe()
	if err != nil {
		t.Skipf("probe: %v", err)
	}
	if !ring.SupportsRecvMultishot(p) {
		t.Skip("kernel without multishot RECV (Linux 6.0)")
	}
	b, err := r.RegisterBufRing(3, count, size, flags)
	if errors.Is(err, ring.ErrBufRingUnsupported) || errors.Is(err, ring.ErrBufIncUnsupported) {
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

// take is what the owner does with a CQE naming a buffer: Take, then the
// bytes.
func take(b *ring.BufRing, c ring.CQE) (id uint16, got []byte) {
	id, _ = c.Buffer()
	off, _ := b.Take(id, int(c.Res), c.BufMore())
	return id, b.Bytes(id, off, int(c.Res))
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
		_, ok := c.Buffer()
		if c.UserData != 9 || !ok || !c.More() || int(c.Res) != len(msg) {
			t.Fatalf("CQE %+v for %q: want user_data 9, a buffer, F_MORE, Res %d", c, msg, len(msg))
		}
		id, buf := take(b, c)
		got = append(got, bytes.Clone(buf))
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
		b.Put(id, 0)
	}
	arm()
	c = waitCQEs(t, r, 1)[0]
	_, ok := c.Buffer()
	id, third := take(b, c)
	if !ok || string(third) != "third" {
		t.Fatalf("after Put: CQE %+v", c)
	}
	b.Put(id, 0)
	unix.Shutdown(peer, unix.SHUT_WR)
	c = waitCQEs(t, r, 1)[0]
	if _, ok := c.Buffer(); c.Res != 0 || c.More() || ok {
		t.Fatalf("CQE %+v at EOF: want Res 0, no buffer, the last", c)
	}
	if b.Held() != 0 {
		t.Fatalf("%d buffers held at the end", b.Held())
	}
}

// TestRecvIncremental: in an incremental ring each receive takes the
// bytes it got from where the last piece of its buffer stopped, the kernel
// keeps the rest (BufMore) until a piece fills it, and the buffer goes
// back to the kernel only after its last piece and every Put: one piece
// still held keeps it out (the next receive then finds no buffer), its Put
// brings it back. A receive that ends at EOF consumes nothing, and the
// next piece, another socket's, still starts where the last one stopped.
func TestRecvIncremental(t *testing.T) {
	r, b := recvRingFlags(t, 2, 64, ring.BufIncremental)
	if !b.Incremental() {
		t.Fatal("registered with BufIncremental, Incremental() is false")
	}
	a, peer := socketpair(t)
	prep(t, r, func(s *ring.SQE) { s.PrepRecvSelect(int32(a), b.Group(), true, 9) })
	type got struct {
		id   uint16
		off  int
		more bool
		s    string
	}
	recv := func(want int) []got {
		t.Helper()
		var out []got
		for _, c := range waitCQEs(t, r, want) {
			id, ok := c.Buffer()
			if !ok || c.UserData != 9 || c.Res <= 0 {
				t.Fatalf("CQE %+v: want bytes in a buffer", c)
			}
			off, lent := b.Take(id, int(c.Res), c.BufMore())
			if !lent {
				t.Fatalf("Take of %d bytes lent nothing", c.Res)
			}
			out = append(out, got{id, off, c.BufMore(), string(b.Bytes(id, off, int(c.Res)))})
		}
		return out
	}
	write := func(fd int, s string) {
		t.Helper()
		if _, err := unix.Write(fd, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	write(peer, "first")
	p1 := recv(1)[0]
	write(peer, "second")
	p2 := recv(1)[0]
	if p1 != (got{p1.id, 0, true, "first"}) || p2 != (got{p1.id, 5, true, "second"}) {
		t.Fatalf("two small receives: %+v, %+v; want one buffer, offsets 0 and 5, the kernel keeping the rest", p1, p2)
	}
	x := p1.id
	// 60 bytes: the 53 left in x (its last piece), then 7 in the other.
	long := strings.Repeat("0123456789", 6)
	write(peer, long)
	ps := recv(2)
	if ps[0] != (got{x, 11, false, long[:53]}) || ps[1].id == x || ps[1] != (got{ps[1].id, 0, true, long[53:]}) {
		t.Fatalf("60 bytes over the end of a buffer: %+v", ps)
	}
	y := ps[1].id
	if b.Held() != 4 {
		t.Fatalf("Held() = %d with four pieces out, want 4", b.Held())
	}
	// Two of x's three pieces back: x stays the owner's. Then the rest
	// of y.
	b.Put(x, 5)
	b.Put(x, 0)
	write(peer, strings.Repeat("y", 57))
	if ps := recv(1); ps[0] != (got{y, 7, false, strings.Repeat("y", 57)}) {
		t.Fatalf("the rest of the second buffer: %+v", ps)
	}
	write(peer, "z")
	if c := waitCQEs(t, r, 1)[0]; c.Res != -int32(unix.ENOBUFS) || c.More() {
		t.Fatalf("CQE %+v with a piece of one buffer and all of the other out: want -ENOBUFS, the last", c)
	}
	b.Put(x, 11) // x's last piece: x goes back
	prep(t, r, func(s *ring.SQE) { s.PrepRecvSelect(int32(a), b.Group(), true, 9) })
	if ps := recv(1); ps[0] != (got{x, 0, true, "z"}) {
		t.Fatalf("after the last Put of a buffer: %+v, want it again from offset 0", ps)
	}
	b.Put(x, 0)
	b.Put(y, 7)
	b.Put(y, 0)
	// EOF on one socket, then bytes on another: the piece starts at 1.
	unix.Shutdown(peer, unix.SHUT_WR)
	c := waitCQEs(t, r, 1)[0]
	if c.Res != 0 || c.More() {
		t.Fatalf("CQE %+v at EOF: want Res 0, the last", c)
	}
	if id, ok := c.Buffer(); ok {
		if _, lent := b.Take(id, 0, c.BufMore()); lent {
			t.Fatal("a receive of 0 bytes lent a piece")
		}
	}
	a2, peer2 := socketpair(t)
	prep(t, r, func(s *ring.SQE) { s.PrepRecvSelect(int32(a2), b.Group(), true, 9) })
	write(peer2, "after")
	if ps := recv(1); ps[0] != (got{x, 1, true, "after"}) {
		t.Fatalf("after an EOF: %+v, want buffer %d from offset 1", ps, x)
	}
	b.Put(x, 1)
	if b.Held() != 0 {
		t.Fatalf("Held() = %d at the end", b.Held())
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
	if _, ok := c.Buffer(); !ok || c.UserData != 7 {
		t.Fatalf("poll-first recv after a write: CQE %+v", c)
	} else if id, got := take(b, c); string(got) != "ab" {
		t.Fatalf("poll-first recv after a write: %q", got)
	} else {
		b.Put(id, 0)
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
		_, ok := c.Buffer()
		if !ok || c.More() || c.UserData != uint64(i+1) {
			t.Fatalf("max %d: CQE %+v: want a buffer, the last", tc.max, c)
		}
		id, gotb := take(b, c)
		if got := string(gotb); got != tc.want {
			t.Fatalf("max %d: received %q, want %q", tc.max, got, tc.want)
		}
		b.Put(id, 0)
	}
	big := bytes.Repeat([]byte{'x'}, 100)
	if _, err := unix.Write(peer, big); err != nil {
		t.Fatal(err)
	}
	prep(t, r, func(s *ring.SQE) { s.PrepRecvSelectMax(int32(a), b.Group(), 1000, true, 3) })
	c = waitCQEs(t, r, 1)[0]
	if _, ok := c.Buffer(); !ok || c.Res != 64 {
		t.Fatalf("max 1000, buffers of 64, 100 bytes queued: CQE %+v, want Res 64", c)
	}
	id, _ := take(b, c)
	b.Put(id, 0)
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

// mustPanic runs f and fails t unless it panics with a message saying
// want.
func mustPanic(t *testing.T, what, want string, f func()) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), want) {
			t.Fatalf("%s: panic %v, want one saying %q", what, r, want)
		}
	}()
	f()
}

// TestBufRingOwnership: Take and Put enforce who holds a buffer.
func TestBufRingOwnership(t *testing.T) {
	_, b := recvRing(t, 4, 64)
	mustPanic(t, "Put of a buffer never taken", "does not hold", func() { b.Put(1, 0) })
	b.Take(1, 10, false)
	mustPanic(t, "Take twice", "named again", func() { b.Take(1, 10, false) })
	b.Put(1, 0)
	mustPanic(t, "Put twice", "does not hold", func() { b.Put(1, 0) })
	mustPanic(t, "Bytes after Put", "does not hold", func() { b.Bytes(1, 0, 10) })
	mustPanic(t, "Take past the size", "outside", func() { b.Take(2, 65, false) })
	mustPanic(t, "Take past the count", "outside", func() { b.Take(4, 1, false) })
}

// TestBufRingIncrementalOwnership: in an incremental ring a Put needs a
// piece held, a piece cannot run past the buffer, and the kernel cannot
// name a buffer after its last piece until the owner gave it back.
func TestBufRingIncrementalOwnership(t *testing.T) {
	_, b := recvRingFlags(t, 4, 64, ring.BufIncremental)
	mustPanic(t, "Put of a buffer never taken", "does not hold", func() { b.Put(1, 0) })
	if off, lent := b.Take(1, 10, true); off != 0 || !lent {
		t.Fatalf("first piece: off %d, lent %v", off, lent)
	}
	if off, lent := b.Take(1, 0, false); off != 10 || lent {
		t.Fatalf("a piece of 0 bytes: off %d, lent %v; want 10, nothing lent", off, lent)
	}
	mustPanic(t, "a piece past the end", "a piece of 60 bytes after 10", func() { b.Take(1, 60, true) })
	if off, _ := b.Take(1, 54, false); off != 10 {
		t.Fatalf("last piece at %d, want 10", off)
	}
	mustPanic(t, "named after its last piece", "named again", func() { b.Take(1, 1, true) })
	mustPanic(t, "Bytes past the pieces taken", "does not hold", func() { b.Bytes(1, 60, 5) })
	mustPanic(t, "Put of a piece never lent", "does not hold", func() { b.Put(1, 5) })
	b.Put(1, 10)
	mustPanic(t, "the same piece put twice, another still out", "does not hold", func() { b.Put(1, 10) })
	b.Put(1, 0)
	mustPanic(t, "Put with no piece held", "does not hold", func() { b.Put(1, 0) })
	if b.Held() != 0 {
		t.Fatalf("Held() = %d", b.Held())
	}
}

// TestRegisterBufRingArgs refuses sizes the kernel would misread.
func TestRegisterBufRingArgs(t *testing.T) {
	r := newRing(t, ring.Config{Entries: 4})
	for _, tc := range []struct{ count, size int }{{0, 64}, {3, 64}, {1 << 16, 64}, {4, 0}, {4, 1<<30 + 1}} {
		if b, err := r.RegisterBufRing(1, tc.count, tc.size, 0); err == nil {
			b.Close()
			t.Errorf("RegisterBufRing(count %d, size %d) accepted", tc.count, tc.size)
		}
	}
	if b, err := r.RegisterBufRing(1, 4, 64, 1); err == nil {
		b.Close()
		t.Errorf("RegisterBufRing with the kernel's MMAP flag (the kernel's memory, not ours) accepted")
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
