package integration_test

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// TestSocketActivation starts echod the way systemd's echod-activated.socket
// does: the listening socket is already open and is handed over as fd 3
// (--listen fd:3). echod must serve it, say its address in the startup line,
// and close it at shutdown; the parent's copy keeps working as a file.
func TestSocketActivation(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			gl, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			f, err := gl.(*net.TCPListener).File()
			gl.Close()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd := exec.Command(echodPath)
			cmd.ExtraFiles = []*os.File{f} // the child's fd 3
			d := startBackendCmd(t, cmd, backend, "--listen", "fd:3")
			if d.addr() != gl.Addr().String() {
				t.Fatalf("echod says it serves %q, want the inherited socket's %q", d.addr(), gl.Addr())
			}
			c := dial(t, d.addr())
			if err := echo(c, []byte("activated"), 64, 1); err != nil {
				t.Fatal(err)
			}
			c.Close()
			d.stop()
		})
	}
}

// TestSocketActivationNotASocket: fd:3 that is not a listening socket is a
// startup failure (exit 1) that names the flag, not a crash or a hang.
func TestSocketActivationNotASocket(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "not-a-socket")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(echodPath)
	cmd.ExtraFiles = []*os.File{f}
	d := launch(t, cmd, "--listen", "fd:3")
	if code := d.wait(bound); code != 1 {
		t.Fatalf("exit status %d, want 1", code)
	}
	d.waitLog("cannot start")
}
