package reactor_test

import (
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
	"github.com/oneshot-io/oneshot/reactor"
)

// TestArmRefusesImpossibleFd: a number at or past the hard RLIMIT_NOFILE
// that names no open descriptor is refused at once, for Arm, Poll and
// CloseFd alike, rather than accepted and paid for: the tables kept by fd
// number grew to it, and one Arm on fd 1<<26 kept 258 MiB (io_uring) or
// 516 MiB (epoll) for good. An open descriptor at a number that high is
// served (TestArmServesOpenFdPastLimit).
func TestArmRefusesImpossibleFd(t *testing.T) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Max >= 1<<26 {
		t.Skipf("the hard RLIMIT_NOFILE here (%d) lets descriptors reach 1<<26", rl.Max)
	}
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 1)
			for _, fd := range []int{int(rl.Max), 1 << 26, 1<<31 - 1} {
				if _, err := r.Arm(fd, reactor.In, func(reactor.Result) { t.Errorf("callback ran for refused fd %d", fd) }); err == nil {
					t.Fatalf("Arm(%d) accepted; the hard RLIMIT_NOFILE is %d", fd, rl.Max)
				}
				if _, err := r.Poll(t.Context(), fd, reactor.In); err == nil {
					t.Fatalf("Poll(%d) succeeded; the hard RLIMIT_NOFILE is %d", fd, rl.Max)
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

// TestArmServesOpenFdPastLimit: a descriptor opened before RLIMIT_NOFILE
// was lowered stays open at a number past the limit, and the reactor,
// made after the lowering, still serves it. In a child process: the hard
// limit, once lowered, may not come back.
func TestArmServesOpenFdPastLimit(t *testing.T) {
	if os.Getenv("ONESHOT_FD_PAST_LIMIT") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestArmServesOpenFdPastLimit$", "-test.v")
		cmd.Env = append(os.Environ(), "ONESHOT_FD_PAST_LIMIT=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "--- PASS: TestArmServesOpenFdPastLimit") {
			t.Fatalf("child did not pass:\n%s", out)
		}
		return
	}
	a, b := pair(t)
	const high = 900
	if err := unix.Dup2(a, high); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(high) })
	lim := unix.Rlimit{Cur: 512, Max: 512}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	if got := poller.FdLimit(); got != 512 {
		t.Fatalf("FdLimit = %d, want the hard limit 512", got)
	}
	for _, bk := range backends {
		t.Run(name(bk), func(t *testing.T) {
			r := newReactor(t, bk, 1)
			got := make(chan reactor.Result, 1)
			if _, err := r.Arm(high, reactor.In, func(res reactor.Result) { got <- res }); err != nil {
				t.Fatalf("Arm(%d), open past the limit: %v", high, err)
			}
			if _, err := unix.Write(b, []byte("x")); err != nil {
				t.Fatal(err)
			}
			if res := <-got; res.Err != nil || res.Events&reactor.In == 0 {
				t.Fatalf("Arm(%d): %+v, want In", high, res)
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

// TestIOPathWhereMemoryRefuses: receive buffers the kernel will not map
// leave io_uring on readiness polls, said in IOPath, rather than fail New
// or leave io_uring; where only the second loop's are refused, IOPath says
// that loop's path too, and both loops serve. A child process runs it
// under an RLIMIT_AS that holds one loop's 1 GiB of buffers, not two
// (and not 32 TiB), whatever the host's overcommit policy.
func TestIOPathWhereMemoryRefuses(t *testing.T) {
	if os.Getenv("ONESHOT_AS_LIMIT") == "" {
		newReactor(t, backend{kind: reactor.BackendUring}, 1).Close() // skips where io_uring is unavailable
		if ok, why := kernelRecvs(t); !ok {
			t.Skipf("kernel without a receive path: %s", why)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestIOPathWhereMemoryRefuses$", "-test.v")
		cmd.Env = append(os.Environ(), "ONESHOT_AS_LIMIT=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "--- PASS: TestIOPathWhereMemoryRefuses") {
			t.Fatalf("child did not pass:\n%s", out)
		}
		return
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var vmKiB uint64
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmSize:" {
			vmKiB, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	if vmKiB == 0 {
		t.Fatalf("no VmSize in /proc/self/status")
	}
	lim := vmKiB<<10 + 1536<<20 // room for one loop's 1 GiB and the test's own growth
	if err := unix.Setrlimit(unix.RLIMIT_AS, &unix.Rlimit{Cur: lim, Max: unix.RLIM_INFINITY}); err != nil {
		t.Skipf("cannot set RLIMIT_AS: %v", err)
	}
	for _, tc := range []struct {
		name       string
		loops      int
		size       int
		want, more string
	}{
		{"32 TiB", 1, 1 << 30, "poll (the kernel refused 32768 receive buffers of 1073741824 bytes", ""},
		{"second loop", 2, 32 << 10, "ring (", "; loop 1: poll (the kernel refused 32768 receive buffers of 32768 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := reactor.New(reactor.Config{Backend: reactor.BackendUring, Loops: tc.loops, RecvBuffers: 1 << 15, RecvBufferSize: tc.size})
			if err != nil {
				t.Fatalf("New: %v; want io_uring on readiness polls where the buffers are refused", err)
			}
			defer r.Close()
			if got := r.IOPath(); r.Backend() != reactor.BackendUring || !strings.HasPrefix(got, tc.want) || !strings.Contains(got, tc.more) {
				t.Fatalf("backend %s, IOPath() = %q; want io_uring, %q... naming %q", r.Backend(), got, tc.want, tc.more)
			}
			ln, err := r.Listen("tcp", "127.0.0.1:0", &echo{}, reactor.ListenConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			for i := range tc.loops { // a Listener hands its Conns to the loops in turn
				echoRounds(t, dial(t, ln), 10, mrand.New(mrand.NewPCG(uint64(i), 2)))
			}
		})
	}
}
