package integration_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestGracefulShutdown sends SIGTERM while 500 connections are mid-transfer
// and checks that every byte the clients handed to echod's kernel before the
// signal comes back, in order, followed by a clean EOF, and that echod exits
// 0. To make "mid-transfer" certain rather than likely, echod is stopped
// (SIGSTOP) while the clients write, so the signal finds all 32 MiB unread
// in its sockets; 20 more connections wait in its accept queue.
func TestGracefulShutdown(t *testing.T) {
	const (
		conns   = 500
		backlog = 20 // dialed while echod is stopped: not yet accepted
		// size fits in echod's socket receive window (64 KiB or more on
		// Linux), so once Write returns the bytes are in echod's kernel
		// buffers, not still in ours: SIOCOUTQ checks that below.
		size = 64 << 10
	)
	needFiles(t, conns+backlog)
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			d := startBackend(t, backend, "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
				"--shutdown-timeout", bound.String())
			cs := make([]*net.TCPConn, conns+backlog)
			payloads := make([][]byte, len(cs))
			for i := range conns {
				cs[i] = dial(t, d.addr()).(*net.TCPConn)
			}
			d.waitMetric("echod_connections_active", func(v float64) bool { return v == conns }, "connections accepted")

			d.signal(syscall.SIGSTOP)
			for i := conns; i < len(cs); i++ {
				cs[i] = dial(t, d.addr()).(*net.TCPConn)
			}
			var wg sync.WaitGroup
			for i, c := range cs {
				payloads[i] = randomBytes(uint64(i), size)
				wg.Go(func() {
					c.SetWriteDeadline(time.Now().Add(bound))
					if _, err := c.Write(payloads[i]); err != nil {
						t.Errorf("conn %d: write: %v", i, err)
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				d.signal(syscall.SIGCONT)
				return
			}
			// Written is not yet received: wait until no client socket
			// holds unacknowledged bytes, so that everything sent is in
			// echod's kernel buffers.
			waitUntil(t, "every client's send queue drained into echod", func() bool {
				for _, c := range cs {
					if outq(t, c) != 0 {
						return false
					}
				}
				return true
			})
			d.signal(syscall.SIGTERM) // pending until echod runs again
			d.signal(syscall.SIGCONT)

			for i, c := range cs {
				wg.Go(func() {
					c.SetReadDeadline(time.Now().Add(bound))
					got, err := io.ReadAll(c)
					if err != nil {
						t.Errorf("conn %d: %v after %d of %d bytes (want all, then EOF)", i, err, len(got), size)
						return
					}
					if !bytes.Equal(got, payloads[i]) {
						t.Errorf("conn %d: %d bytes before EOF, want exactly the %d sent", i, len(got), size)
					}
				})
			}
			wg.Wait()
			if code := d.wait(bound); code != 0 {
				t.Fatalf("exit status %d after SIGTERM, want 0", code)
			}
			d.waitLog("stopped")
		})
	}
}

// TestShutdownTimeout: a peer that never reads cannot be drained, so the
// shutdown ends after --shutdown-timeout by closing it, and says so with
// exit status 1.
func TestShutdownTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	d := startEchod(t, "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
		"--max-pending", "16KiB", "--shutdown-timeout", timeout.String())
	stuck, _ := stuckPeer(t, d, 256<<20)
	start := time.Now()
	d.signal(syscall.SIGTERM)
	if code := d.wait(bound); code != 1 {
		t.Fatalf("exit status %d after a timed-out shutdown, want 1", code)
	}
	if el := time.Since(start); el < timeout {
		t.Errorf("exited %v after SIGTERM, before --shutdown-timeout %v", el, timeout)
	}
	d.waitLog("shutdown timed out: connections still echoing were closed")
	stuck.Close()
}

// TestSecondSignal: while a shutdown waits for a peer that never reads, a
// second signal makes echod exit at once, with 128+signal.
func TestSecondSignal(t *testing.T) {
	t.Parallel()
	d := startEchod(t, "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
		"--max-pending", "16KiB", "--shutdown-timeout", "1h")
	stuck, _ := stuckPeer(t, d, 256<<20)
	d.signal(syscall.SIGTERM)
	d.waitLog("shutting down")
	d.signal(syscall.SIGINT)
	if code := d.wait(bound); code != 128+int(syscall.SIGINT) {
		t.Fatalf("exit status %d after a second signal, want %d", code, 128+int(syscall.SIGINT))
	}
	stuck.Close()
}

// stuckPeer connects to d and writes without ever reading, at most limit
// bytes, until echod says on /metrics that it paused the connection: it
// holds --max-pending bytes of echo that the peer's full receive buffer
// will not take, so from then on echod cannot drain it. A write that merely
// blocked for a while cannot tell that apart from a daemon the busy machine
// has not scheduled yet (and echod could then drain everything); only echod
// knows. A goroutine goes on writing until the connection closes; the
// test's cleanup closes it and waits for that goroutine. sent counts the
// bytes written. d needs --metrics-addr.
func stuckPeer(t *testing.T, d *daemon, limit int64) (c net.Conn, sent *atomic.Int64) {
	t.Helper()
	c, sent = dial(t, d.addr()), new(atomic.Int64)
	took := make(chan struct{}) // closed if echod took all limit bytes
	done := make(chan struct{})
	go func() {
		defer close(done)
		chunk := randomBytes(9, 1<<20)
		for sent.Load() < limit {
			n, err := c.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return // the test closed c, or echod did
			}
		}
		close(took)
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	waitUntil(t, "echod pauses a peer that never reads (echod_connections_paused = 1)", func() bool {
		select {
		case <-took:
			t.Fatalf("echod took %d bytes from a peer that never reads: no backpressure", sent.Load())
		default:
		}
		return d.stream(d.metrics(), "echod_connections_paused") == 1
	})
	return c, sent
}

// TestSeccompDeniesIOUring runs echod under a seccomp filter that fails
// io_uring's syscalls, as Docker's default profile does (EPERM) or an old
// kernel would (ENOSYS): --backend auto must serve on epoll and say why in
// its startup line; --backend uring must refuse to start and say why.
func TestSeccompDeniesIOUring(t *testing.T) {
	for _, errno := range []unix.Errno{unix.EPERM, unix.ENOSYS} {
		name := map[unix.Errno]string{unix.EPERM: "EPERM", unix.ENOSYS: "ENOSYS"}[errno]
		t.Run(name+"/auto", func(t *testing.T) {
			t.Parallel()
			d := startDenied(t, errno, "--listen", "127.0.0.1:0", "--backend", "auto")
			if err := d.waitListening(); err != nil {
				t.Fatal(err)
			}
			if d.backend != "epoll" {
				t.Errorf("backend %q under the filter, want epoll", d.backend)
			}
			if !strings.Contains(d.reason, name) && !strings.Contains(d.reason, errno.Error()) {
				t.Errorf("backend_reason %q does not say %s (%v)", d.reason, name, errno)
			}
			if err := echo(dial(t, d.addr()), randomBytes(5, 1<<20), 64<<10, 5); err != nil {
				t.Fatal(err)
			}
			d.stop()
		})
		t.Run(name+"/uring", func(t *testing.T) {
			t.Parallel()
			d := startDenied(t, errno, "--listen", "127.0.0.1:0", "--backend", "uring")
			if code := d.wait(bound); code != 1 {
				t.Fatalf("exit status %d with io_uring denied and --backend uring, want 1", code)
			}
			line := d.waitLog("cannot start")
			if msg := fmt.Sprint(line["error"]); !(strings.Contains(msg, name) || strings.Contains(msg, errno.Error())) || !strings.Contains(msg, "unavailable") {
				t.Errorf("error %q: want it to say io_uring is unavailable and why (%s)", msg, name)
			}
		})
	}
}

// TestMetricsMatchTraffic drives a known amount of traffic and checks that
// /metrics counted exactly that, and that the reactor's request counters
// are consistent with it.
func TestMetricsMatchTraffic(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			d := startBackend(t, backend, "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
			if body, code := httpGet(t, "http://"+d.metricsAddr+"/healthz"); code != 200 || body != "ok\n" {
				t.Errorf("/healthz: %d %q, want 200 ok", code, body)
			}
			total := 0
			for i := range 10 {
				c := dial(t, d.addr())
				n := 1000 * (i + 1)
				if err := echo(c, randomBytes(uint64(i), n), 512, uint64(i)); err != nil {
					t.Fatal(err)
				}
				total += n
				c.Close()
			}
			m := d.waitMetric("echod_connections_closed_total", func(v float64) bool { return v == 10 }, "ten connections closed")
			for _, w := range []struct {
				name string
				want float64
			}{
				{"echod_connections_accepted_total", 10},
				{"echod_connections_active", 0},
				{"echod_connections_refused_total", 0},
				{"echod_received_bytes_total", float64(total)},
				{"echod_sent_bytes_total", float64(total)},
			} {
				if got := d.stream(m, w.name); got != w.want {
					t.Errorf("%s = %v, want %v", w.name, got, w.want)
				}
			}
			if m[fmt.Sprintf("echod_backend_info{backend=%q}", backend)] != 1 {
				t.Errorf("echod_backend_info{backend=%q} missing", backend)
			}
			armed := m["oneshot_requests_armed_total"]
			var completed float64
			for _, o := range []string{"ready", "error", "canceled", "closed"} {
				completed += m[fmt.Sprintf("oneshot_requests_completed_total{outcome=%q}", o)]
			}
			// Each connection needs at least one readiness event to be read.
			if ready := m[`oneshot_requests_completed_total{outcome="ready"}`]; ready < 10 {
				t.Errorf("ready completions %v, want at least one per connection (10)", ready)
			}
			if outstanding := m["oneshot_requests_outstanding"]; completed+outstanding != armed {
				t.Errorf("armed %v != completed %v + outstanding %v: a request was lost or completed twice", armed, completed, outstanding)
			}
			if m["oneshot_kernel_enters_total"] <= 0 {
				t.Error("oneshot_kernel_enters_total is 0 after serving traffic")
			}
			d.stop()
		})
	}
}

// TestAddressInUse: a taken address makes echod exit 1 and say so.
func TestAddressInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := launch(t, exec.Command(echodPath), "--listen", ln.Addr().String())
	if code := d.wait(bound); code != 1 {
		t.Fatalf("exit status %d on a taken address, want 1", code)
	}
	line := d.waitLog("cannot start")
	if msg := fmt.Sprint(line["error"]); !strings.Contains(msg, "address already in use") || !strings.Contains(msg, ln.Addr().String()) {
		t.Errorf("error %q: want the address and \"address already in use\"", msg)
	}
}

// waitUntil polls cond until it holds or bound passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, bound)
		}
		<-tick.C
	}
}

// outq returns the bytes c's kernel socket still holds unsent or
// unacknowledged (SIOCOUTQ).
func outq(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ioerr error
	if err := rc.Control(func(fd uintptr) { n, ioerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
		t.Fatal(err)
	}
	if ioerr != nil {
		t.Fatalf("SIOCOUTQ: %v", ioerr)
	}
	return n
}
