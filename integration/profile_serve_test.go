package integration_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestSeccompProfileServes runs echod under contrib/seccomp-io_uring.json,
// compiled and installed the way a container runtime would: on io_uring (the
// profile's point) and on epoll it must serve TCP and a Unix socket, answer
// /metrics and stop cleanly, so the profile allows everything echod needs.
// Without the three io_uring lines — Docker's default situation — auto must
// fall back to epoll and say EPERM.
func TestSeccompProfileServes(t *testing.T) {
	if syscallNumbers == nil {
		t.Skipf("no syscall table for %s in this test", runtime.GOARCH)
	}
	tests := []struct {
		name, profile, backend, wantBackend string
	}{
		{"uring", profilePath, "uring", "uring"},
		{"epoll", profilePath, "epoll", "epoll"},
		{"without io_uring", "", "auto", "epoll"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			profile := tt.profile
			if profile == "" {
				profile = profileWithout(t, "io_uring_setup", "io_uring_enter", "io_uring_register")
			}
			cmd := exec.Command(os.Args[0])
			cmd.Env = profileCommandEnv(profile, echodPath)
			sock := filepath.Join(t.TempDir(), "echod.sock")
			d := launch(t, cmd, "--backend", tt.backend, "--listen", "127.0.0.1:0", "--listen", "unix:"+sock,
				"--metrics-addr", "127.0.0.1:0")
			if err := d.waitListening(); err != nil {
				if tt.backend == "uring" {
					if line, ok := d.log.find("cannot start"); ok && strings.Contains(fmt.Sprint(line["error"]), "unavailable") {
						t.Skipf("io_uring unavailable here: %v", line["error"])
					}
				}
				t.Fatal(err)
			}
			if d.backend != tt.wantBackend {
				t.Fatalf("backend %q (%s), want %s", d.backend, d.reason, tt.wantBackend)
			}
			if tt.profile == "" && !strings.Contains(d.reason, "EPERM") && !strings.Contains(d.reason, "operation not permitted") {
				t.Errorf("backend_reason %q does not say io_uring was denied (EPERM)", d.reason)
			}
			for _, addr := range d.addrs {
				if err := echo(dial(t, addr), randomBytes(11, 1<<20), 32<<10, 11); err != nil {
					t.Fatalf("%s under the profile: %v", addr, err)
				}
			}
			if m := d.metrics(); d.stream(m, "echod_received_bytes_total") != 1<<20 {
				t.Errorf("/metrics under the profile: received %v bytes on the first listener, want %d", d.stream(m, "echod_received_bytes_total"), 1<<20)
			}
			d.stop()
		})
	}
}
