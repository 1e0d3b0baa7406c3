package integration_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestClosedLogPipe: echod logs to a pipe whose reader goes away (a log
// shipper dies, `echod | less` quits). The next log line must not kill
// echod with SIGPIPE, which skips the drain and leaves the socket file
// behind: echod drops the line, counts it, goes on serving, and still
// shuts down cleanly.
func TestClosedLogPipe(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "echod.sock")
			// At debug level every connection logs a line.
			d := startBackend(t, backend, "--listen", "unix:"+sock, "--metrics-addr", "127.0.0.1:0", "--log-level", "debug")
			d.closeLog()
			if err := echo(dial(t, d.addr()), []byte("after the log reader left"), 8, 1); err != nil {
				t.Fatalf("echo with a broken log pipe: %v", err)
			}
			dropped := "echod_log_lines_dropped_total"
			if _, ok := d.metrics()[dropped]; !ok {
				t.Fatalf("/metrics has no %s", dropped)
			}
			waitUntil(t, dropped+" counts the lines the pipe refused", func() bool { return d.metrics()[dropped] > 0 })
			d.stop() // logs "shutting down" and "stopped" into the broken pipe
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Errorf("socket file after shutdown: %v, want it removed", err)
			}
		})
	}
}

// TestSIGHUP: a hangup (the terminal echod ran in closed, or someone sent
// it) stops echod like SIGTERM: the drain, exit 0, the socket file removed.
// It used to kill echod at once.
func TestSIGHUP(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "echod.sock")
			d := startBackend(t, backend, "--listen", "unix:"+sock, "--listen", "127.0.0.1:0")
			c := dial(t, d.addr())
			if err := echo(c, randomBytes(1, 64<<10), 4096, 1); err != nil {
				t.Fatal(err)
			}
			d.signal(syscall.SIGHUP)
			if code := d.wait(bound); code != 0 {
				t.Fatalf("exit status %d after SIGHUP, want 0", code)
			}
			if line := d.waitLog("shutting down"); line["signal"] != "hangup" {
				t.Errorf("shutting down on %v, want hangup", line["signal"])
			}
			d.waitLog("stopped")
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Errorf("socket file after SIGHUP: %v, want it removed", err)
			}
		})
	}
}

// TestSIGHUPUnderNohup: started with SIGHUP ignored (nohup, or a shell's
// `trap "" HUP`), echod leaves it ignored: asking for that is why one runs
// a daemon under nohup.
func TestSIGHUPUnderNohup(t *testing.T) {
	t.Parallel()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh to start echod with SIGHUP ignored: %v", err)
	}
	// An ignored signal stays ignored across exec.
	cmd := exec.Command(sh, "-c", `trap "" HUP; exec "$0" "$@"`, echodPath)
	d := launch(t, cmd, "--listen", "127.0.0.1:0")
	if err := d.waitListening(); err != nil {
		t.Fatal(err)
	}
	// An ignored signal is discarded when sent: by the time kill returns,
	// echod has not, and will not, see it.
	d.signal(syscall.SIGHUP)
	if err := echo(dial(t, d.addr()), []byte("still serving"), 4, 1); err != nil {
		t.Fatalf("after SIGHUP under nohup: %v", err)
	}
	if line, ok := d.log.find("shutting down"); ok {
		t.Fatalf("echod shut down on a SIGHUP it was started ignoring: %v", fmt.Sprint(line))
	}
	d.stop()
}
