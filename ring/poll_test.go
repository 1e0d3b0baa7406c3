//go:build linux

package ring_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/ring"
)

// socketpair returns a connected pair of non-blocking unix stream sockets,
// closed when the test ends.
func socketpair(t testing.TB) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// assertNoCQE submits what is prepared, lets the kernel post anything it
// has (zero-timeout wait), and fails if a CQE is ready.
func assertNoCQE(t *testing.T, r *ring.Ring, why string) {
	t.Helper()
	if _, err := r.SubmitAndWait(1, 0); err != nil {
		t.Fatalf("SubmitAndWait(1, 0): %v", err)
	}
	var buf [4]ring.CQE
	if n := r.Reap(buf[:]); n != 0 {
		t.Fatalf("%s: got CQEs %+v, want none", why, buf[:n])
	}
}

var pollFlagCases = []struct {
	name  string
	flags ring.SetupFlags
}{
	{"default", 0},
	{"SingleIssuer|DeferTaskrun", ring.SetupSingleIssuer | ring.SetupDeferTaskrun},
}

func TestPollAddFiresOnlyAfterPeerWrites(t *testing.T) {
	for _, tc := range pollFlagCases {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t, tc.flags)
			r := newRing(t, ring.Config{Entries: 8, Flags: tc.flags})
			a, b := socketpair(t)
			prep(t, r, func(s *ring.SQE) { s.PrepPollAdd(int32(a), unix.POLLIN, 7) })
			assertNoCQE(t, r, "poll before the peer wrote")
			if _, err := unix.Write(b, []byte("x")); err != nil {
				t.Fatalf("write: %v", err)
			}
			c := waitCQEs(t, r, 1)[0]
			if c.UserData != 7 || c.Res < 0 || c.Res&unix.POLLIN == 0 {
				t.Fatalf("CQE = %+v, want user_data 7 with POLLIN", c)
			}
			if c.Res&unix.POLLOUT != 0 {
				t.Fatalf("CQE = %+v reports POLLOUT, which was not asked for", c)
			}
			// One-shot: more data does not complete it again.
			if _, err := unix.Write(b, []byte("y")); err != nil {
				t.Fatalf("write: %v", err)
			}
			assertNoCQE(t, r, "one-shot poll after it fired")
		})
	}
}

func TestPollRemovePending(t *testing.T) {
	r := newRing(t, ring.Config{Entries: 8})
	a, _ := socketpair(t)
	prep(t, r, func(s *ring.SQE) { s.PrepPollAdd(int32(a), unix.POLLIN, 1) })
	assertNoCQE(t, r, "poll before remove")
	prep(t, r, func(s *ring.SQE) { s.PrepPollRemove(1, 2) })
	res := map[uint64]int32{}
	for _, c := range waitCQEs(t, r, 2) {
		if _, dup := res[c.UserData]; dup {
			t.Fatalf("user_data %d completed twice", c.UserData)
		}
		res[c.UserData] = c.Res
	}
	if res[1] != -int32(unix.ECANCELED) {
		t.Errorf("poll completed with %d, want -ECANCELED", res[1])
	}
	if r, ok := res[2]; !ok || r != 0 {
		t.Errorf("remove completed with %d (present %v), want 0", r, ok)
	}
}

func TestRemoveUnknownUserData(t *testing.T) {
	r := newRing(t, ring.Config{Entries: 8})
	tests := []struct {
		name string
		prep func(*ring.SQE)
	}{
		{"POLL_REMOVE", func(s *ring.SQE) { s.PrepPollRemove(12345, 9) }},
		{"ASYNC_CANCEL", func(s *ring.SQE) { s.PrepCancel(12345, 0, 9) }},
		{"TIMEOUT_REMOVE", func(s *ring.SQE) { s.PrepTimeoutRemove(12345, 9) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prep(t, r, tc.prep)
			c := waitCQEs(t, r, 1)[0]
			if c.UserData != 9 || c.Res != -int32(unix.ENOENT) {
				t.Fatalf("CQE = %+v, want user_data 9 res -ENOENT", c)
			}
		})
	}
}

func TestCancelPendingPoll(t *testing.T) {
	r := newRing(t, ring.Config{Entries: 8})
	p, err := r.Probe()
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if !p.Supports(ring.OpAsyncCancel) {
		t.Skip("kernel lacks IORING_OP_ASYNC_CANCEL")
	}
	a, _ := socketpair(t)
	tests := []struct {
		name string
		prep func(*ring.SQE)
		want int32 // cancel's own result
	}{
		{"by user_data", func(s *ring.SQE) { s.PrepCancel(1, 0, 2) }, 0},
		{"by fd, all", func(s *ring.SQE) { s.PrepCancelFd(int32(a), ring.CancelAll, 2) }, 1},
		{"any (implies all: res is the count)", func(s *ring.SQE) { s.PrepCancel(0, ring.CancelAny, 2) }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prep(t, r, func(s *ring.SQE) { s.PrepPollAdd(int32(a), unix.POLLIN, 1) })
			assertNoCQE(t, r, "poll before cancel")
			prep(t, r, tc.prep)
			res := map[uint64]int32{}
			for _, c := range waitCQEs(t, r, 2) {
				res[c.UserData] = c.Res
			}
			if res[2] == -int32(unix.EINVAL) {
				t.Skip("kernel does not know these cancel flags (needs 5.19)")
			}
			if res[1] != -int32(unix.ECANCELED) || res[2] != tc.want {
				t.Fatalf("poll res %d, cancel res %d; want -ECANCELED and %d", res[1], res[2], tc.want)
			}
		})
	}
}

func TestTimeoutSQE(t *testing.T) {
	r := newRing(t, ring.Config{Entries: 8})
	const d = 20 * time.Millisecond
	start := time.Now()
	ts := unix.NsecToTimespec(int64(d))
	prep(t, r, func(s *ring.SQE) { s.PrepTimeout(&ts, 0, 0, 3) })
	ts = unix.Timespec{} // PrepTimeout copied it
	c := waitCQEs(t, r, 1)[0]
	if el := time.Since(start); el < d {
		t.Fatalf("timeout fired after %v, before %v", el, d)
	}
	if c.UserData != 3 || c.Res != -int32(unix.ETIME) {
		t.Fatalf("CQE = %+v, want user_data 3 res -ETIME", c)
	}
}
