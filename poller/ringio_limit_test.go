//go:build linux

package poller_test

// The multishot receive's byte limit (RecvOptions.Limit) and the probe
// that decides whether the kernel has it; the harness is ringio_test.go's.

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
	"github.com/oneshot-io/oneshot/ring"
)

// TestRecvLimit: with RecvOptions.Limit, where the kernel has it, a
// multishot receive ends (one Event without More, Ready with bytes) once it
// has taken the limit, up to a buffer more, and leaves the rest in the
// socket for the next receive; in order, nothing lost. Where the probe
// finds no limit the receive is unlimited and Layout says why.
func TestRecvLimit(t *testing.T) {
	for _, c := range recvConfigs {
		t.Run(c.name, func(t *testing.T) {
			opts := c.opts
			opts.Recv = poller.RecvOptions{Buffers: 8, Size: recvBufSize, Limit: 300}
			h := &recvHarness{harness: newHarness(t, opts), got: map[uint64]*bytes.Buffer{}, ended: map[uint64]poller.Event{}}
			rc, why := poller.RingIOOf(h.p)
			if rc == nil {
				t.Skipf("no receive path: %s", why)
			}
			if !rc.Limited() {
				t.Skipf("no limit here: %s", rc.Layout())
			}
			h.rc = rc
			a, b := h.pair()
			want := make([]byte, 1000)
			for i := range want {
				want[i] = byte(i * 7)
			}
			if _, err := unix.Write(b, want); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			for i := 0; got.Len() < len(want); i++ {
				if i == 10 {
					t.Fatalf("%d receives took %d bytes of %d", i, got.Len(), len(want))
				}
				tag := h.tag()
				h.recv(tag, a, true)
				ev := h.await(tag)
				n := h.got[tag].Len()
				if ev.Err() != nil || ev.N == 0 || ev.More {
					t.Fatalf("receive %d: %v, want its end Ready with bytes", i, ev)
				}
				if left := len(want) - got.Len(); n < min(300, left) || n > 300+recvBufSize {
					t.Fatalf("receive %d took %d bytes, want the limit of 300 up to a buffer more (%d left)", i, n, left)
				}
				got.Write(h.got[tag].Bytes())
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatal("the limited receives brought other bytes than were written, or not in order")
			}
			h.quiet()
		})
	}
}

// TestRecvLimitProbe: a kernel the probe finds without the limit (here the
// probe's hook says so) gets unlimited multishot receives, and Layout says
// why.
func TestRecvLimitProbe(t *testing.T) {
	defer poller.SetRecvLimitSupport(func(*ring.Ring, uint16) (bool, string, error) { return false, "no limit (hook)", nil })()
	opts := recvConfigs[1].opts
	opts.Recv = poller.RecvOptions{Buffers: 8, Size: recvBufSize, Limit: 300}
	h := &recvHarness{harness: newHarness(t, opts), got: map[uint64]*bytes.Buffer{}, ended: map[uint64]poller.Event{}}
	rc, why := poller.RingIOOf(h.p)
	if rc == nil {
		t.Skipf("no receive path: %s", why)
	}
	if rc.Limited() || !strings.Contains(rc.Layout(), "unlimited: no limit (hook)") {
		t.Fatalf("Limited() = %v, Layout %q: want unlimited, and why", rc.Limited(), rc.Layout())
	}
	// And the receive is armed without one: it takes all 1,000 bytes and
	// goes on (where the kernel has the limit, one set anyway would end it
	// at 300 and a buffer).
	h.rc = rc
	a, b := h.pair()
	tag := h.tag()
	h.recv(tag, a, true)
	if _, err := unix.Write(b, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	h.receiveUntil(tag, 1000)
	if ev, ended := h.ended[tag]; ended {
		t.Fatalf("the unlimited receive ended: %v", ev)
	}
	h.quiet()
}

// TestRecvLimitProbeFails: a probe whose request never ended leaves a ring
// a late CQE could reach, so the poller does not open on it.
func TestRecvLimitProbeFails(t *testing.T) {
	broken := errors.New("the probe's request never ended (hook)")
	defer poller.SetRecvLimitSupport(func(*ring.Ring, uint16) (bool, string, error) { return false, "", broken })()
	opts := recvConfigs[1].opts
	opts.Recv = poller.RecvOptions{Buffers: 8, Size: recvBufSize, Limit: 300}
	p, _, err := poller.Open(opts)
	if err == nil {
		p.Close()
		if _, why := poller.RingIOOf(p); why != "" {
			t.Skipf("no receive path, so no probe: %s", why)
		}
		t.Fatal("Open succeeded after the receive-limit probe failed")
	}
	if errors.Is(err, ring.ErrUnavailable) {
		t.Skipf("io_uring unavailable here: %v", err)
	}
	if !errors.Is(err, broken) {
		t.Fatalf("Open: %v, want the probe's error", err)
	}
}
