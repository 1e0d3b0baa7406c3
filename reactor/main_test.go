package reactor_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/internal/seccomp"
	"github.com/oneshot-io/oneshot/reactor"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(dialerEnv); spec != "" {
		os.Exit(runDialer(spec))
	}
	if _, err := seccomp.ApplyFromEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "installing the io_uring seccomp filter:", err)
		os.Exit(2)
	}
	goleak.VerifyTestMain(m)
}

// dialerEnv makes the test binary a child that holds the client ends of
// many connections ("port:count"), so that the parent's fd limit only pays
// for the server ends. It prints "ok" once all are connected and exits when
// its stdin closes.
const dialerEnv = "ONESHOT_REACTOR_DIALER"

func runDialer(spec string) int {
	var port, n int
	if _, err := fmt.Sscanf(spec, "%d:%d", &port, &n); err != nil {
		fmt.Fprintln(os.Stderr, "bad", dialerEnv, spec)
		return 2
	}
	fds := make([]int, 0, n)
	for i := 0; i < n; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			return 1
		}
		fds = append(fds, fd)
	}
	fmt.Println("ok")
	io.Copy(io.Discard, os.Stdin)
	for _, fd := range fds {
		unix.Close(fd)
	}
	return 0
}

// backend is one row of the table every behavioural test runs over: a
// kernel interface, and how Conns read on it.
type backend struct {
	kind reactor.Backend
	io   reactor.IOMode
	inc  bool // ring I/O consuming buffers incrementally (Config.RecvIncremental)
	bufs int  // Config.RecvBuffers; 0: the default
}

var backends = []backend{
	{kind: reactor.BackendEpoll},
	{kind: reactor.BackendUring}, // Conns read, and every handler call's Writes go, through the ring where the kernel can
}

// connBackends adds, for the connection layer's tests, io_uring with Conns
// reading after readiness polls: the path of a kernel without multishot
// RECV.
var connBackends = append(backends[:len(backends):len(backends)],
	backend{kind: reactor.BackendUring, io: reactor.IOPoll},
	backend{kind: reactor.BackendUring, inc: true})

// newReactor starts a reactor on b with loops loops, closed at cleanup
// (Close is idempotent: a test may close it first); a uring row skips,
// saying why, where io_uring is unavailable.
func newReactor(t testing.TB, b backend, loops int) *reactor.Reactor {
	t.Helper()
	r := startReactor(t, b, reactor.Config{Backend: b.kind, Loops: loops, IO: b.io, RecvIncremental: b.inc, RecvBuffers: b.bufs})
	if b.kind == reactor.BackendUring && b.io == reactor.IOAuto {
		reactor.SendEveryWriteOnRing(r)
	}
	return r
}

// startReactor starts a reactor with cfg, which runs b's backend, closed at
// cleanup; a uring row skips, saying why, where io_uring is unavailable.
func startReactor(t testing.TB, b backend, cfg reactor.Config) *reactor.Reactor {
	t.Helper()
	r, err := reactor.New(cfg)
	if err != nil {
		if b.kind == reactor.BackendUring && errors.Is(err, reactor.ErrUnavailable) {
			t.Skipf("io_uring unavailable here: %v", err)
		}
		t.Fatalf("New(%s): %v", name(b), err)
	}
	if r.Backend() != b.kind {
		t.Fatalf("Backend() = %s, want %s", r.Backend(), b.kind)
	}
	t.Cleanup(func() {
		// Every cancel the test made ends in the kernel: a count that
		// drifted would make each close Settle's bound long.
		deadline := time.Now().Add(5 * time.Second)
		for n, ok := reactor.Disarming(r); ok && n != 0; n, ok = reactor.Disarming(r) {
			if time.Now().After(deadline) {
				t.Errorf("%d canceled requests never ended in the kernel", n)
				break
			}
			time.Sleep(time.Millisecond)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// socketpair returns a connected nonblocking AF_UNIX stream pair; the
// caller owns both fds.
func socketpair(t testing.TB) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	return fds[0], fds[1]
}

// openFds counts this process's descriptors.
func openFds(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("reading /proc/self/fd: %v", err)
	}
	return len(ents)
}

// fdSet is a snapshot of this process's descriptors, each named by its
// number and what it refers to ("12 socket:[4711]"): a socket or pipe
// opened since is told apart from one closed since even where its number
// was reused (each has an inode of its own; eventfds, epoll and io_uring
// descriptors do not). Leak checks compare sets, not counts: a count
// moves under a test that leaked nothing when the runtime closes, at a
// garbage collection, the pipes net keeps for splice(2) (an io.Copy
// between two net.TCPConns in an earlier test leaves some) or a net.Conn
// a test dropped.
type fdSet map[string]bool

func openFdSet(t testing.TB) fdSet {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("reading /proc/self/fd: %v", err)
	}
	s := make(fdSet, len(ents))
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || strings.HasPrefix(target, "/proc/") {
			continue // closed meanwhile, or ReadDir's own
		}
		s[e.Name()+" "+target] = true
	}
	return s
}

// changed lists the descriptors open now that were not when s was taken
// ("+12 socket:[4711]"), and those closed since ("-0 /dev/null") but for
// sockets and pipes, which the runtime may close at any collection: a
// leak, or a descriptor closed that the code under test did not own.
func (s fdSet) changed(t testing.TB) []string {
	t.Helper()
	now := openFdSet(t)
	var out []string
	for k := range now {
		if !s[k] {
			out = append(out, "+"+k)
		}
	}
	for k := range s {
		if !now[k] && !strings.Contains(k, " socket:[") && !strings.Contains(k, " pipe:[") {
			out = append(out, "-"+k)
		}
	}
	return out
}

// waitFor polls cond until it holds or d passes (bounded polling, no
// fixed sleep standing in for a synchronisation).
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func name(b backend) string {
	n := strings.ToUpper(string(b.kind[:1])) + string(b.kind[1:])
	if b.io == reactor.IOPoll {
		n += "Poll"
	}
	if b.inc {
		n += "Inc"
	}
	if b.bufs != 0 {
		n += fmt.Sprintf("Bufs%d", b.bufs)
	}
	return n
}

// pair is socketpair with both fds closed at cleanup (after the test's own
// defers, before the reactor's Close registered earlier).
func pair(t testing.TB) (int, int) {
	t.Helper()
	a, p := socketpair(t)
	t.Cleanup(func() {
		unix.Close(a)
		unix.Close(p)
	})
	return a, p
}

// dial connects to ln's address; the client is closed at cleanup.
func dial(t testing.TB, ln *reactor.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
