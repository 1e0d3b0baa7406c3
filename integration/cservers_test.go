package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cServer is one of the C reference servers in bench/c, as
// scripts/compare.sh runs them.
type cServer struct {
	name string   // as in its startup line and in compare.sh
	prog string   // the Makefile target's file name
	args []string // extra flags
	says string   // what its line after the startup line says the flags did
}

var cServers = []cServer{
	{"c-epoll", "echo_epoll", nil, ""},
	{"c-uring", "echo_uring", nil, ", recv multishot from a provided-buffer ring"},
	{"c-uring", "echo_uring", []string{"--recv", "oneshot"}, ", recv one-shot into per-connection buffers"},
	{"c-uring", "echo_uring", []string{"--gather"}, ", gathering batches"},
}

// startupLine is the line compare.sh reads the bound address from (its
// bound_addr), in the Go peers' format.
var startupLine = regexp.MustCompile(`^(\S+): listening on tcp:(\S+) loops=1 gomaxprocs=1 pid=(\d+)$`)

// TestCServers builds the C echo servers of bench/c and checks what a
// benchmark reference must get right: the startup line compare.sh parses,
// byte-exact echo on many connections, a half-closed peer's echo flushed
// before the close, peers that reset with echo pending, and exit 0 on
// SIGTERM. It skips where there is no C compiler, and the io_uring server
// where liburing-dev or io_uring is missing.
func TestCServers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds C; skipped under -short")
	}
	for _, tool := range []string{"make", "cc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s on PATH", tool)
		}
	}
	needFiles(t, 600)
	dir := t.TempDir()
	for _, s := range cServers {
		t.Run(strings.Join(append([]string{s.prog}, s.args...), " "), func(t *testing.T) {
			bin := filepath.Join(dir, s.prog)
			if _, err := os.Stat(bin); err != nil {
				out, err := exec.Command("make", "-s", "-C", filepath.Join("..", "bench", "c"), "OUT="+dir, bin).CombinedOutput()
				if err != nil {
					if bytes.Contains(out, []byte("liburing.h")) {
						t.Skipf("no liburing-dev: %s", out)
					}
					t.Fatalf("make %s: %v\n%s", s.prog, err, out)
				}
			}
			srv := startC(t, s, bin)
			if s.says != "" {
				srv.await(t, s.says)
			}
			t.Run("many connections", func(t *testing.T) {
				var wg sync.WaitGroup
				errs := make(chan error, 500)
				for i := range 500 {
					c := dial(t, srv.addr)
					wg.Go(func() {
						size := 64 + i*131%(48<<10)
						if err := echo(c, randomBytes(uint64(i), size), 4096, uint64(i)); err != nil {
							errs <- fmt.Errorf("conn %d: %w", i, err)
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
			})
			// A slow reader makes the server meet a full socket: partial
			// writes, EAGAIN or short sends, its own queue past its high
			// water mark; the echo must still come back whole, in order.
			for _, tc := range []struct {
				name  string
				size  int
				pause time.Duration
			}{{"half close", 4 << 20, 0}, {"slow reader", 8 << 20, 300 * time.Millisecond}} {
				t.Run(tc.name, func(t *testing.T) {
					c := dial(t, srv.addr).(*net.TCPConn)
					c.SetDeadline(time.Now().Add(bound))
					halfCloseEcho(t, c, randomBytes(7, tc.size), tc.pause)
				})
			}
			t.Run("resets with echo pending", func(t *testing.T) {
				for i := range 20 {
					c := dial(t, srv.addr).(*net.TCPConn)
					c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
					_, _ = c.Write(randomBytes(uint64(i), 2<<20)) // times out: nobody reads the echo, which is the point
					if err := c.SetLinger(0); err != nil {
						t.Fatal(err)
					}
					c.Close()
				}
				// Still serving, and every connection's fd closed once its
				// peer is gone: the server holds as many fds as at startup.
				c := dial(t, srv.addr)
				if err := echo(c, []byte("after the resets"), 4, 1); err != nil {
					t.Fatal(err)
				}
				c.Close()
				for deadline := time.Now().Add(bound); ; time.Sleep(10 * time.Millisecond) {
					n, err := openFDs(srv.pid)
					if err != nil {
						t.Fatal(err)
					}
					if n == srv.fds {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the server holds %d fds %v after its peers left; %d at startup", n, bound, srv.fds)
					}
				}
			})
			srv.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-srv.done:
				if srv.err != nil {
					t.Fatalf("after SIGTERM: %v; stderr:\n%s", srv.err, srv.stderr())
				}
			case <-time.After(bound):
				t.Fatalf("still running %v after SIGTERM", bound)
			}
		})
	}
}

type cProc struct {
	cmd  *exec.Cmd
	addr string
	pid  int
	fds  int           // open fds once listening, before any connection
	done chan struct{} // closed when the process has exited
	err  error         // its exit status; set before done closes

	mu     sync.Mutex // guards errBuf
	errBuf bytes.Buffer
}

func (p *cProc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errBuf.String()
}

// startC starts bin on 127.0.0.1:0, reads its startup line, and stops it
// (SIGKILL) when the test ends if it still runs.
func startC(t *testing.T, s cServer, bin string) *cProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*bound)
	cmd := exec.CommandContext(ctx, bin, append([]string{"--addr", "127.0.0.1:0", "--loops", "1"}, s.args...)...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &cProc{cmd: cmd, done: make(chan struct{})}
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for n := 0; sc.Scan(); n++ {
			p.mu.Lock()
			p.errBuf.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if n == 0 {
				first <- sc.Text()
			}
		}
		close(first)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel() // kills it if still running
		select {
		case <-p.done:
		case <-time.After(bound):
			t.Errorf("%s did not exit", bin)
		}
	})
	var line string
	select {
	case line = <-first:
	case <-time.After(bound):
		t.Fatalf("%s: no startup line after %v", bin, bound)
	}
	if strings.Contains(p.stderr(), "io_uring_queue_init") {
		t.Skipf("io_uring unavailable: %s", p.stderr())
	}
	m := startupLine.FindStringSubmatch(line)
	if m == nil || m[1] != s.name {
		t.Fatalf("startup line %q: want %q", line, s.name+": listening on tcp:HOST:PORT loops=1 gomaxprocs=1 pid=PID")
	}
	p.addr = m[2]
	fmt.Sscan(m[3], &p.pid)
	if p.pid != cmd.Process.Pid {
		t.Fatalf("startup line says pid %d; the process is %d", p.pid, cmd.Process.Pid)
	}
	if p.fds, err = openFDs(p.pid); err != nil {
		t.Fatal(err)
	}
	return p
}

// await waits for the server's stderr to say want, or fails the test.
func (p *cProc) await(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(bound); !strings.Contains(p.stderr(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v its stderr does not say %q:\n%s", bound, want, p.stderr())
		}
	}
}

func openFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}
