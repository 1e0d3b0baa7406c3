package reactor_test

import (
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
	"github.com/oneshot-io/oneshot/reactor"
)

// TestArmRefusesImpossibleFd: a number no descriptor can reach
// (poller.FdLimit) is refused at once, for Arm and Poll alike, rather than
// accepted and paid for: the tables kept by fd number grew to it, and one
// Arm on fd 1<<26 kept 258 MiB (io_uring) or 516 MiB (epoll) for good.
func TestArmRefusesImpossibleFd(t *testing.T) {
	// The bound as the kernel sets it: fs.nr_open, or the hard
	// RLIMIT_NOFILE where that is higher.
	limit := 1 << 20
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		fmt.Sscan(string(b), &limit)
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Max > uint64(limit) {
		limit = int(min(rl.Max, math.MaxInt32))
	}
	if got := poller.FdLimit(); got != limit {
		t.Fatalf("poller.FdLimit() = %d, want %d (fs.nr_open, or the hard RLIMIT_NOFILE %d if higher)", got, limit, rl.Max)
	}
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			for _, fd := range []int{limit, 1 << 30} {
				if fd < limit {
					continue
				}
				if _, err := r.Arm(fd, reactor.In, func(reactor.Result) { t.Errorf("callback ran for refused fd %d", fd) }); err == nil {
					t.Fatalf("Arm(%d) accepted; no descriptor here reaches %d", fd, limit)
				}
				if _, err := r.Poll(t.Context(), fd, reactor.In); err == nil {
					t.Fatalf("Poll(%d) succeeded; no descriptor here reaches %d", fd, limit)
				}
				if err := r.CloseFd(fd); err == nil {
					t.Fatalf("CloseFd(%d) accepted", fd)
				}
			}
			if s := r.Stats(); s.Outstanding != 0 {
				t.Fatalf("Outstanding = %d after refused arms", s.Outstanding)
			}
		})
	}
}

// TestFarDeadlinesMeanLater: a deadline or timeout of centuries is far off,
// not due: unbounded, it was added to the loop clock and wrapped negative,
// which fired an ArmDeadline at once and closed a Conn with IdleTimeout
// 1<<63 - 1 on its first byte. Each must still be pending well after the
// turn that set it.
func TestFarDeadlinesMeanLater(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b)+"/ArmDeadline", func(t *testing.T) {
			r := newReactor(t, b, 1)
			a, _ := pair(t)
			for _, dl := range []time.Time{
				time.Now().Add(1<<63 - 1),
				time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
			} {
				got := make(chan reactor.Result, 1)
				q, err := r.ArmDeadline(a, reactor.In, dl, func(res reactor.Result) { got <- res })
				if err != nil {
					t.Fatal(err)
				}
				select {
				case res := <-got:
					t.Fatalf("deadline %v fired at once: %+v", dl, res)
				case <-time.After(100 * time.Millisecond):
				}
				if !q.Cancel() {
					t.Fatal("Cancel of the pending request = false")
				}
				<-got
			}
		})
		t.Run(name(b)+"/IdleTimeout", func(t *testing.T) {
			r := newReactor(t, b, 1)
			h := &echo{closed: make(chan error, 1)}
			ln, err := r.Listen("tcp", "127.0.0.1:0", h, reactor.ListenConfig{IdleTimeout: 1<<63 - 1, ReadTimeout: 1<<63 - 1})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c := dial(t, ln)
			if _, err := c.Write([]byte("hi")); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-h.closed:
				t.Fatalf("a timeout of 292 years closed the Conn at once: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
}
