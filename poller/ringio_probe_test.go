//go:build linux

package poller_test

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
	"github.com/oneshot-io/oneshot/ring"
)

// TestRingIOEpoll: epoll has no receive path, and says so.
func TestRingIOEpoll(t *testing.T) {
	p := openPoller(t, poller.Options{Backend: poller.Epoll, Recv: poller.RecvOptions{Buffers: 8, Size: 64}})
	if rc, why := poller.RingIOOf(p); rc != nil || !strings.Contains(why, "epoll") {
		t.Fatalf("RingIOOf(epoll) = %v, %q", rc, why)
	}
	u := openPoller(t, poller.Options{Backend: poller.Uring, Setup: poller.UringCoop})
	if rc, why := poller.RingIOOf(u); rc != nil || why == "" {
		t.Fatalf("RingIOOf(uring without Options.Recv) = %v, %q", rc, why)
	}
}

// TestRecvSupport is the probe's decision, kernel by kernel.
func TestRecvSupport(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []ring.Opcode
		ok   bool
		why  string
	}{
		{"6.0+", []ring.Opcode{ring.OpRecv, ring.OpSendZC}, true, ""},
		{"5.6 to 5.19", []ring.Opcode{ring.OpRecv}, false, "multishot RECV (Linux 6.0)"},
		{"before 5.6", nil, false, "IORING_OP_RECV"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := poller.RecvSupport(func(op ring.Opcode) bool {
				for _, o := range tc.ops {
					if o == op {
						return true
					}
				}
				return false
			})
			if ok != tc.ok || !strings.Contains(why, tc.why) {
				t.Fatalf("recvSupport = %v, %q; want %v, %q", ok, why, tc.ok, tc.why)
			}
		})
	}
}

// TestRecvBufsByKernel: the receive buffers are consumed incrementally
// where that is asked for and the kernel takes the flag (6.12), whole
// where it refuses it (6.0 to 6.11) or where it was not asked for; a kernel
// without buffer rings (before 5.19), or one that refuses their memory,
// leaves no receive path and says why; other refusals (of the options)
// are errors. The kernel's answers come from a hook in front of a real
// ring.
func TestRecvBufsByKernel(t *testing.T) {
	r, err := ring.New(ring.Config{Entries: 2})
	if err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	defer r.Close()
	if b, err := r.RegisterBufRing(1, 4, 64, 0); err != nil {
		t.Skipf("no buffer rings here (Linux 5.19): %v", err)
	} else {
		b.Close()
	}
	kernelInc := false
	if b, err := r.RegisterBufRing(1, 4, 64, ring.BufIncremental); err == nil {
		kernelInc = true
		b.Close()
	}
	incErr := fmt.Errorf("%w: %w", ring.ErrBufIncUnsupported, unix.EINVAL)
	ringErr := fmt.Errorf("%w: %w", ring.ErrBufRingUnsupported, unix.EINVAL)
	for _, tc := range []struct {
		name     string
		whole    bool
		inc, any error // the kernel's answer with and without the flag
		want     []ring.BufRingFlags
		wantInc  bool
		why, err string
	}{
		{"6.12+", false, nil, nil, []ring.BufRingFlags{ring.BufIncremental}, true, "", ""},
		{"6.12+, whole (the default)", true, nil, nil, []ring.BufRingFlags{0}, false, "", ""},
		{"6.0 to 6.11", false, incErr, nil, []ring.BufRingFlags{ring.BufIncremental, 0}, false, "", ""},
		{"before 5.19", false, incErr, ringErr, []ring.BufRingFlags{ring.BufIncremental, 0}, false, "need Linux 5.19", ""},
		{"memory refused", false, incErr, unix.ENOMEM, []ring.BufRingFlags{ring.BufIncremental, 0}, false, "refused 4 receive buffers of 64 bytes (cannot allocate memory)", ""},
		{"options refused", false, incErr, unix.EINVAL, []ring.BufRingFlags{ring.BufIncremental, 0}, false, "", "receive buffers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.wantInc && !kernelInc {
				t.Skip("this kernel consumes buffers whole (incremental consumption needs Linux 6.12)")
			}
			var asked []ring.BufRingFlags
			b, why, err := poller.RecvBufs(poller.RecvOptions{Buffers: 4, Size: 64, Incremental: !tc.whole}, func(f ring.BufRingFlags) (*ring.BufRing, error) {
				asked = append(asked, f)
				if answer := map[bool]error{true: tc.inc, false: tc.any}[f != 0]; answer != nil {
					return nil, answer
				}
				return r.RegisterBufRing(1, 4, 64, f)
			})
			if b != nil {
				defer b.Close()
			}
			if fmt.Sprint(asked) != fmt.Sprint(tc.want) {
				t.Errorf("registered with flags %v, want %v", asked, tc.want)
			}
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) || b != nil {
					t.Fatalf("got %v, %q, %v; want an error naming %q", b, why, err, tc.err)
				}
			case tc.why != "":
				if err != nil || b != nil || !strings.Contains(why, tc.why) {
					t.Fatalf("got %v, %q, %v; want no ring, saying %q", b, why, err, tc.why)
				}
			default:
				if err != nil || b == nil || why != "" || b.Incremental() != tc.wantInc {
					t.Fatalf("got %v, %q, %v; want a ring, incremental %v", b, why, err, tc.wantInc)
				}
			}
		})
	}
}
