package poller_test

import (
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/internal/seccomp"
	"github.com/oneshot-io/oneshot/poller"
)

func TestMain(m *testing.M) {
	// Under seccomp.EnvVar this binary is the child of TestSeccompFallback:
	// install the filter before anything else runs.
	if _, err := seccomp.ApplyFromEnv(); err != nil {
		os.Stderr.WriteString("poller test: " + err.Error() + "\n")
		os.Exit(2)
	}
	goleak.VerifyTestMain(m)
}

// backends lists the backends for tests that take one of each.
var backends = []poller.Backend{poller.Uring, poller.Epoll}

// configs is the table every conformance test runs over: epoll, and
// io_uring with each setup the backend offers, so that deferred,
// cooperative and plain task running all meet the same contract, and once
// more with every look gathering (gathering), so that Gather's enter does
// too.
var configs = []config{
	{"uring", poller.Options{Backend: poller.Uring}, false},
	{"uring-coop", poller.Options{Backend: poller.Uring, Setup: poller.UringCoop}, false},
	{"uring-plain", poller.Options{Backend: poller.Uring, Setup: poller.UringPlain}, false},
	{"epoll", poller.Options{Backend: poller.Epoll}, false},
	{"uring-gather", poller.Options{Backend: poller.Uring}, true},
	{"uring-coop-gather", poller.Options{Backend: poller.Uring, Setup: poller.UringCoop}, true},
	{"uring-plain-gather", poller.Options{Backend: poller.Uring, Setup: poller.UringPlain}, true},
}

type config struct {
	name   string
	opts   poller.Options
	gather bool // the poller is wrapped in gathering
}

// wrap returns p as this config drives it.
func (c config) wrap(p poller.Poller) poller.Poller {
	if c.gather {
		return gathering{p}
	}
	return p
}

// gathering asks every Wait to gather a batch (Poller.Gather), as a busy
// KernelWait loop asks its looks to: the window is long enough that the
// enter often waits it out, and the batch larger than most tests make.
type gathering struct{ poller.Poller }

func (g gathering) Wait(evs []poller.Event, timeout time.Duration) (int, error) {
	g.Gather(3, 200*time.Microsecond)
	return g.Poller.Wait(evs, timeout)
}

// forEach runs fn as a subtest per config.
func forEach(t *testing.T, fn func(t *testing.T, h *harness)) {
	t.Helper()
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.opts)
			h.p = c.wrap(h.p)
			fn(t, h)
		})
	}
}

// openPoller opens backend b on a locked OS thread (a single-issuer ring
// needs it) and closes it at cleanup. The io_uring row skips, with the
// reason, where io_uring is unavailable.
func openPoller(tb testing.TB, opts poller.Options) poller.Poller {
	tb.Helper()
	runtime.LockOSThread()
	b := opts.Backend
	p, sel, err := poller.Open(opts)
	if err != nil {
		runtime.UnlockOSThread()
		if b == poller.Uring && sel.UringErr != nil {
			tb.Skipf("io_uring unavailable: %v", sel.UringErr)
		}
		tb.Fatalf("Open(%s): %v", b, err)
	}
	if p.Backend() != b {
		tb.Fatalf("Open(%s) gave %s", b, p.Backend())
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		runtime.UnlockOSThread()
	})
	return p
}

// tester is what the harness needs of *testing.T and *rapid.T.
type tester interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
}

// harness drives one poller and proves exactly-once: every Event is checked
// against the set of armed tags, and a second Event for a tag fails the test.
type harness struct {
	t       tester
	p       poller.Poller
	armed   map[uint64]bool         // tags armed whose Event has not come
	seen    map[uint64]poller.Event // each tag's one Event
	buf     []poller.Event
	nextTag uint64
	open    map[int]bool // fds this test owns and has not closed
}

func newHarness(t *testing.T, opts poller.Options) *harness {
	h := &harness{
		t:       t,
		armed:   map[uint64]bool{},
		seen:    map[uint64]poller.Event{},
		buf:     make([]poller.Event, 64),
		nextTag: 1,
		open:    map[int]bool{},
	}
	// Registered before the poller's cleanup, so it runs after Close.
	t.Cleanup(func() {
		for fd := range h.open {
			unix.Close(fd)
		}
	})
	h.p = openPoller(t, opts)
	t.Cleanup(h.finish)
	return h
}

func (h *harness) tag() uint64 { h.nextTag++; return h.nextTag }

func (h *harness) arm(tag uint64, fd int, events uint32) {
	h.t.Helper()
	if err := h.p.Arm(tag, fd, events); err != nil {
		h.t.Fatalf("Arm(%#x, %d, %#x): %v", tag, fd, events, err)
	}
	h.armed[tag] = true
}

// poll runs one Wait and records what it returns.
func (h *harness) poll(timeout time.Duration) int {
	h.t.Helper()
	n, err := h.p.Wait(h.buf, timeout)
	if err != nil {
		h.t.Fatalf("Wait: %v", err)
	}
	for _, ev := range h.buf[:n] {
		h.record(ev)
	}
	return n
}

func (h *harness) record(ev poller.Event) {
	h.t.Helper()
	if prev, dup := h.seen[ev.Tag]; dup {
		h.t.Errorf("second Event for tag %#x: %v (first %v)", ev.Tag, ev, prev)
		return
	}
	if !h.armed[ev.Tag] {
		h.t.Errorf("Event for a tag never armed: %v", ev)
		return
	}
	kinds := 0
	if ev.Canceled {
		kinds++
	}
	if ev.Errno != 0 {
		kinds++
	}
	if ev.Events != 0 {
		kinds++
	}
	if kinds != 1 {
		h.t.Errorf("Event %+v is not exactly one of ready, failed, canceled", ev)
	}
	delete(h.armed, ev.Tag)
	h.seen[ev.Tag] = ev
}

// await Waits until tag's Event has come, and returns it.
func (h *harness) await(tag uint64) poller.Event {
	h.t.Helper()
	return h.awaitBy(tag, func(d time.Duration) { h.poll(d) })
}

// awaitBy is await with poll making each Wait (the model adds its checks).
func (h *harness) awaitBy(tag uint64, poll func(time.Duration)) poller.Event {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ev, ok := h.seen[tag]; ok {
			return ev
		}
		left := time.Until(deadline)
		if left <= 0 {
			h.t.Fatalf("no Event for tag %#x within 5s", tag)
		}
		poll(left)
	}
}

// quiet proves that no Event is due: nothing comes out of a short Wait (the
// first submits whatever the backend queued).
func (h *harness) quiet() {
	h.t.Helper()
	for _, d := range []time.Duration{0, 20 * time.Millisecond} {
		if n, err := h.p.Wait(h.buf, d); err != nil || n != 0 {
			h.t.Fatalf("Wait(%v) = %d, %v; want nothing: %v", d, n, err, h.buf[:n])
		}
	}
}

// finish disarms what is still armed and proves each such tag then gets its
// one Event, and that the poller agrees nothing is left.
func (h *harness) finish() {
	if h.t.Failed() {
		return
	}
	for tag := range h.armed {
		if !h.p.Disarm(tag) {
			h.t.Errorf("Disarm(%#x) = false for a tag whose Event has not come", tag)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(h.armed) > 0 && time.Now().Before(deadline) {
		h.poll(time.Until(deadline))
	}
	if len(h.armed) > 0 {
		h.t.Errorf("tags without an Event after Disarm: %v", h.armed)
	}
	if st := h.p.Stats(); st.Armed != 0 || st.Disarming != 0 {
		h.t.Errorf("Stats().Armed = %d, Disarming = %d after every Event came", st.Armed, st.Disarming)
	}
}

// pair returns a nonblocking AF_UNIX stream socketpair.
func (h *harness) pair() (a, b int) {
	h.t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		h.t.Fatalf("socketpair: %v", err)
	}
	h.open[fds[0]], h.open[fds[1]] = true, true
	return fds[0], fds[1]
}

func (h *harness) close(fd int) {
	h.t.Helper()
	if !h.open[fd] {
		h.t.Fatalf("close(%d): not an open fd of this test", fd)
	}
	delete(h.open, fd)
	if err := unix.Close(fd); err != nil {
		h.t.Fatalf("close(%d): %v", fd, err)
	}
}

// dup2 makes fd name old's file (closing what fd named) and returns fd.
func (h *harness) dup2(old, fd int) {
	h.t.Helper()
	if err := unix.Dup3(old, fd, unix.O_CLOEXEC); err != nil {
		h.t.Fatalf("dup3(%d, %d): %v", old, fd, err)
	}
	h.open[fd] = true
}

func (h *harness) write(fd int) {
	h.t.Helper()
	if _, err := unix.Write(fd, []byte{'x'}); err != nil {
		h.t.Fatalf("write(%d): %v", fd, err)
	}
}

// fill writes to fd until its send buffer is full, so fd is not writable.
func (h *harness) fill(fd int) {
	h.t.Helper()
	buf := make([]byte, 64<<10)
	for {
		if _, err := unix.Write(fd, buf); err != nil {
			if errors.Is(err, unix.EAGAIN) {
				return
			}
			h.t.Fatalf("fill(%d): %v", fd, err)
		}
	}
}

// drain reads fd until it would block or sees end of file.
func (h *harness) drain(fd int) {
	h.t.Helper()
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EAGAIN), err == nil && n == 0: // empty, or end of file
			return
		case err != nil:
			h.t.Fatalf("drain(%d): %v", fd, err)
		}
	}
}

// expectEOF proves the peer of fd's file was really released: a read on fd
// sees end of file within a deadline.
func (h *harness) expectEOF(fd int) {
	h.t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(pfd, 5000); err != nil {
		h.t.Fatalf("poll(%d): %v", fd, err)
	}
	var buf [16]byte
	n, err := unix.Read(fd, buf[:])
	if n != 0 || err != nil {
		h.t.Fatalf("read(%d) = %d, %v; want end of file: the peer's file is still open", fd, n, err)
	}
}
