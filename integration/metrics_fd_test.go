package integration_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMetricsCannotStarveEcho: under a 256-descriptor limit, 300 idle
// keep-alive /healthz connections used to take every descriptor echod had
// (the metrics server had no cap and no idle timeout), and echo round trips
// timed out until they closed. The metrics server now holds a few
// connections at most, leaving the rest waiting in its accept queue, and
// echo goes on.
func TestMetricsCannotStarveEcho(t *testing.T) {
	const (
		limit = 256
		idle  = 300
	)
	needFiles(t, idle)
	// Connections the metrics server does not take must fit in its
	// accept queue, which is at most net.core.somaxconn long.
	if b, err := os.ReadFile("/proc/sys/net/core/somaxconn"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n < idle {
			t.Skipf("net.core.somaxconn is %d; this test queues up to %d connections", n, idle)
		}
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh to start echod under a descriptor limit: %v", err)
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			// ulimit -n sets the soft and the hard limit: Go's runtime,
			// which raises the soft limit to the hard one, cannot lift it.
			cmd := exec.Command(sh, "-c", `ulimit -n `+strconv.Itoa(limit)+` && exec "$0" "$@"`, echodPath)
			d := startBackendCmd(t, cmd, backend, "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
			pid := d.cmd.Process.Pid
			if got := openFilesLimit(t, pid); got != limit {
				t.Fatalf("echod's descriptor limit is %d, want %d", got, limit)
			}

			start := time.Now()
			if err := echo(dial(t, d.addr()), randomBytes(4, 4096), 512, 4); err != nil {
				t.Fatal(err)
			}
			baseline := time.Since(start)

			// idle clients each ask for /healthz once and then keep their
			// connection open, as a keep-alive client between requests.
			var answered, refused atomic.Int64
			var wg sync.WaitGroup
			conns := make([]net.Conn, 0, idle)
			defer func() {
				for _, c := range conns {
					c.Close()
				}
				wg.Wait()
			}()
			for range idle {
				c, err := net.DialTimeout("tcp", d.metricsAddr, bound)
				if err != nil {
					t.Fatalf("dial metrics: %v", err)
				}
				conns = append(conns, c)
				if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: echod\r\n\r\n"); err != nil {
					t.Fatalf("write request: %v", err)
				}
				wg.Go(func() {
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						refused.Add(1) // closed by echod, or by us at the end
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					answered.Add(1) // and now idle, keeping the connection
				})
			}
			// Wait until echod took every connection it is going to: each
			// one answered, refused, or still queued in the kernel,
			// unaccepted (which costs echod no descriptor).
			var queued int
			waitUntil(t, "every metrics connection answered, refused or queued", func() bool {
				queued = acceptQueue(t, d.metricsAddr)
				return int(answered.Load()+refused.Load())+queued == idle
			})
			fds := openFiles(t, pid)
			t.Logf("%d idle keep-alive /healthz connections: %d answered, %d refused, %d queued unaccepted; echod holds %d of %d descriptors",
				idle, answered.Load(), refused.Load(), queued, fds, limit)

			start = time.Now()
			if err := echo(dial(t, d.addr()), randomBytes(4, 4096), 512, 4); err != nil {
				t.Fatalf("echo with %d idle metrics connections open: %v", idle, err)
			}
			t.Logf("echo of 4 KiB (dial included) with them open: %v; before them: %v", time.Since(start), baseline)
			if fds > limit-16 {
				t.Errorf("echod holds %d of %d descriptors with idle metrics connections open: the metrics server is not bounded", fds, limit)
			}
			d.stop()
		})
	}
}

// acceptQueue returns how many connections wait in the accept queue of the
// TCP listener on addr (an IPv4 HOST:PORT), unaccepted: /proc/net/tcp shows
// it as a listening socket's rx_queue.
func acceptQueue(t *testing.T, addr string) int {
	t.Helper()
	ap, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	ip := ap.IP.To4()
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		// sl local_address rem_address st tx_queue:rx_queue ...
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != local || f[3] != "0A" {
			continue
		}
		_, rx, _ := strings.Cut(f[4], ":")
		n, err := strconv.ParseUint(rx, 16, 32)
		if err != nil {
			t.Fatalf("/proc/net/tcp: %q", line)
		}
		return int(n)
	}
	t.Fatalf("no listening socket on %s in /proc/net/tcp", addr)
	return 0
}

// openFiles returns how many descriptors pid has open.
func openFiles(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// openFilesLimit returns pid's soft RLIMIT_NOFILE from /proc/PID/limits.
func openFilesLimit(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	t.Fatalf("/proc/%d/limits: no open files limit:\n%s", pid, b)
	return 0
}
