package integration_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestAbstractSocketLeavesFilesAlone: unix:@name is a Linux abstract
// socket, which has no file. echod used to remove ./@name at shutdown
// anyway: a file of that name in its working directory, whatever it held.
func TestAbstractSocketLeavesFilesAlone(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			// The abstract namespace is the network namespace's: a name
			// of this process and row, so that parallel runs do not meet.
			name := fmt.Sprintf("@oneshot-integration-%d-%s", os.Getpid(), backend)
			decoy := filepath.Join(dir, name)
			const precious = "a file that happens to share the abstract socket's name\n"
			if err := os.WriteFile(decoy, []byte(precious), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(echodPath)
			cmd.Dir = dir
			d := startBackendCmd(t, cmd, backend, "--listen", "unix:"+name)
			if d.addr() != "unix:"+name {
				t.Fatalf("startup line addr %q, want unix:%s", d.addr(), name)
			}
			if err := echo(dial(t, d.addr()), randomBytes(2, 64<<10), 4096, 2); err != nil {
				t.Fatal(err)
			}
			d.stop()
			if b, err := os.ReadFile(decoy); err != nil || string(b) != precious {
				t.Errorf("%s after echod stopped: %q, %v; want it untouched", decoy, b, err)
			}
		})
	}
}

// TestSocketFileReplaced: echod removes at shutdown the socket file it
// created, and only that: a file someone put at the path since (a new
// deployment's socket, or anything else) stays.
func TestSocketFileReplaced(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "echod.sock")
	d := startEchod(t, "--listen", "unix:"+path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	const other = "not echod's socket\n"
	if err := os.WriteFile(path, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	d.stop()
	if b, err := os.ReadFile(path); err != nil || string(b) != other {
		t.Fatalf("%s after echod stopped: %q, %v; want the new file untouched", path, b, err)
	}
	d.waitLog("socket file replaced since echod created it: left in place")
}
