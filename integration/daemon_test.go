package integration_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/internal/seccomp"
)

// backends are the rows of every test whose behaviour depends on the
// readiness backend.
var backends = []string{"epoll", "uring"}

// daemon is one running echod.
type daemon struct {
	t          *testing.T
	cmd        *exec.Cmd
	log        *logLines
	exited     chan struct{} // closed once cmd.Wait returned
	waitErr    error         // cmd.Wait's result; read after exited is closed
	readerDone chan struct{} // closed once stderr hit EOF
	logPipe    *os.File      // the read end of echod's stderr

	// From the startup line.
	addrs       []string
	backend     string
	reason      string
	metricsAddr string
}

// logLines collects echod's stderr, one JSON object a line.
type logLines struct {
	mu      sync.Mutex
	lines   []string      // guarded by mu
	changed chan struct{} // one slot: lines grew since the last wait
}

func (l *logLines) add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	l.wake()
}

// wake tells a waiter to look again.
func (l *logLines) wake() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// all returns a copy of the lines so far.
func (l *logLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// find returns the first line whose "msg" is msg.
func (l *logLines) find(msg string) (map[string]any, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			return m, true
		}
	}
	return nil, false
}

// startEchod starts echod with args (plus --log-format json) and returns it
// once it logged its startup line. It fails the test if echod exits first.
func startEchod(t *testing.T, args ...string) *daemon {
	t.Helper()
	d := launch(t, exec.Command(echodPath), args...)
	if err := d.waitListening(); err != nil {
		t.Fatal(err)
	}
	return d
}

// startBackend starts echod on backend; on "uring" where io_uring is
// unavailable it skips the test with echod's own reason.
func startBackend(t *testing.T, backend string, args ...string) *daemon {
	t.Helper()
	return startBackendCmd(t, exec.Command(echodPath), backend, args...)
}

// startBackendCmd is startBackend for a command prepared by the caller
// (a working directory, limits).
func startBackendCmd(t *testing.T, cmd *exec.Cmd, backend string, args ...string) *daemon {
	t.Helper()
	d := launch(t, cmd, append([]string{"--backend", backend}, args...)...)
	if err := d.waitListening(); err != nil {
		if backend == "uring" && d.hasExited() {
			if line, ok := d.log.find("cannot start"); ok && strings.Contains(fmt.Sprint(line["error"]), "unavailable") {
				t.Skipf("io_uring unavailable here: %v", line["error"])
			}
		}
		t.Fatal(err)
	}
	if d.backend != backend {
		t.Fatalf("asked for --backend %s, startup line says %q", backend, d.backend)
	}
	return d
}

// startDenied starts echod with io_uring denied by a seccomp filter that
// fails its syscalls with errno, as Docker's default profile does.
func startDenied(t *testing.T, errno unix.Errno, args ...string) *daemon {
	t.Helper()
	return launch(t, seccomp.ExecCommand(errno, echodPath), args...)
}

// launch starts cmd (echod, or a launcher that execs it) with args and
// registers its cleanup: SIGKILL if still running, then reap.
func launch(t *testing.T, cmd *exec.Cmd, args ...string) *daemon {
	t.Helper()
	cmd.Args = append(cmd.Args, append([]string{"--log-format", "json"}, args...)...)
	cmd.Env = childEnv(cmd.Env)
	// Should this test process die without its cleanups (a panic, go
	// test's -timeout), the kernel kills echod rather than orphan it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// An *os.File as Stderr: the child writes the pipe directly, so Wait
	// does not wait for a copying goroutine and our reader sees every line.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	d := &daemon{
		t: t, cmd: cmd,
		log:        &logLines{changed: make(chan struct{}, 1)},
		exited:     make(chan struct{}),
		readerDone: make(chan struct{}),
		logPipe:    r,
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("start echod: %v", err)
	}
	w.Close()
	go func() {
		defer close(d.readerDone)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			d.log.add(sc.Text())
		}
	}()
	go func() {
		d.waitErr = cmd.Wait()
		close(d.exited)
		d.log.wake()
	}()
	t.Cleanup(func() {
		if !d.hasExited() {
			_ = cmd.Process.Kill() // by PID; it is ours and has not been reaped
		}
		select {
		case <-d.exited:
		case <-time.After(bound):
			t.Errorf("echod pid %d not reaped within %v of SIGKILL", cmd.Process.Pid, bound)
			return
		}
		<-d.readerDone
		if t.Failed() {
			t.Logf("echod log:\n%s", d.log.String())
		}
	})
	return d
}

// childEnv is the environment for a process the tests start: env (or
// ours), with the race detector's one-second sleep at exit turned off, since
// echod is built with -race whenever the tests are.
func childEnv(env []string) []string {
	if env == nil {
		env = os.Environ()
	}
	return append(env, "GORACE=atexit_sleep_ms=0")
}

func (d *daemon) hasExited() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

// waitListening waits for the startup line, or echod's exit, or bound.
func (d *daemon) waitListening() error {
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	for {
		if line, ok := d.log.find("listening"); ok {
			addrs, _ := line["addr"].([]any)
			for _, a := range addrs {
				if s, ok := a.(string); ok {
					d.addrs = append(d.addrs, s)
				}
			}
			d.backend, _ = line["backend"].(string)
			d.reason, _ = line["backend_reason"].(string)
			d.metricsAddr, _ = line["metrics_addr"].(string)
			if len(d.addrs) == 0 {
				return fmt.Errorf("startup line without addresses: %v", line)
			}
			return nil
		}
		if d.hasExited() {
			<-d.readerDone
			return fmt.Errorf("echod exited before listening (%v); log:\n%s", d.waitErr, d.log.String())
		}
		select {
		case <-d.log.changed:
		case <-d.exited:
		case <-deadline.C:
			return fmt.Errorf("no startup line within %v; log:\n%s", bound, d.log.String())
		}
	}
}

// waitLog waits for a log line with msg.
func (d *daemon) waitLog(msg string) map[string]any {
	d.t.Helper()
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	for {
		if line, ok := d.log.find(msg); ok {
			return line
		}
		select {
		case <-d.log.changed:
		case <-deadline.C:
			d.t.Fatalf("no %q log line within %v", msg, bound)
		}
	}
}

// closeLog closes the only read end of echod's stderr, as a log reader
// that went away (a pager quit, a log shipper died) would: from then on
// echod's log writes fail with EPIPE. The lines so far stay in d.log.
func (d *daemon) closeLog() {
	d.t.Helper()
	if err := d.logPipe.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		d.t.Fatalf("close echod's log pipe: %v", err)
	}
	<-d.readerDone
}

// addr is the first bound address.
func (d *daemon) addr() string { return d.addrs[0] }

// signal sends sig to echod by PID.
func (d *daemon) signal(sig syscall.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for echod to exit within limit and returns its exit status.
func (d *daemon) wait(limit time.Duration) int {
	d.t.Helper()
	select {
	case <-d.exited:
	case <-time.After(limit):
		// SIGQUIT makes the Go runtime print every goroutine's stack to
		// stderr, which the cleanup shows: the hang's own diagnosis.
		_ = d.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-d.exited:
			<-d.readerDone
		case <-time.After(5 * time.Second):
		}
		d.t.Fatalf("echod still running %v after being told to stop (goroutine dump in the log below)", limit)
	}
	<-d.readerDone
	var ee *exec.ExitError
	switch {
	case d.waitErr == nil:
		return 0
	case errors.As(d.waitErr, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			d.t.Fatalf("echod killed by %v, want an exit status", ws.Signal())
		}
		return ee.ExitCode()
	default:
		d.t.Fatalf("wait: %v", d.waitErr)
		return -1
	}
}

// stop sends SIGTERM and requires a clean exit within bound.
func (d *daemon) stop() {
	d.t.Helper()
	d.signal(syscall.SIGTERM)
	if code := d.wait(bound); code != 0 {
		d.t.Fatalf("echod exit status %d after SIGTERM, want 0", code)
	}
}

// metrics scrapes /metrics and returns each sample by its full name with
// labels, e.g. `echod_connections_active{listener="127.0.0.1:1234"}`.
func (d *daemon) metrics() map[string]float64 {
	d.t.Helper()
	if d.metricsAddr == "" {
		d.t.Fatal("echod was started without --metrics-addr")
	}
	body, code := httpGet(d.t, "http://"+d.metricsAddr+"/metrics")
	if code != http.StatusOK {
		d.t.Fatalf("/metrics: HTTP %d", code)
	}
	m := make(map[string]float64)
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			d.t.Fatalf("/metrics: cannot parse %q", line)
		}
		m[line[:i]] = v
	}
	return m
}

// stream returns the value of a per-listener metric for the first listener.
func (d *daemon) stream(m map[string]float64, name string) float64 {
	d.t.Helper()
	key := fmt.Sprintf("%s{listener=%q}", name, d.addr())
	v, ok := m[key]
	if !ok {
		d.t.Fatalf("/metrics has no %s", key)
	}
	return v
}

// waitMetric polls /metrics until cond holds for the first listener's
// metric name, failing after bound. Polling is the only way to observe a
// counter another process updates.
func (d *daemon) waitMetric(name string, cond func(float64) bool, what string) map[string]float64 {
	d.t.Helper()
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		m := d.metrics()
		v := d.stream(m, name)
		if cond(v) {
			return m
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: %s is %v after %v", what, name, v, bound)
		}
		<-tick.C
	}
}

func httpGet(t *testing.T, url string) (string, int) {
	t.Helper()
	c := &http.Client{Timeout: bound, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b), resp.StatusCode
}
