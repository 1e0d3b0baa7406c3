// Package integration_test drives the real echod binary over loopback: it
// builds echod once per test run, starts it with --listen 127.0.0.1:0,
// learns the bound address from its startup log line, and talks to it with
// ordinary clients. Every process a test starts is stopped by that test.
//
// The io_uring rows skip, saying why, where io_uring is unavailable; the
// epoll rows always run. Where the test binary is built with -race, echod is
// too, so a data race in the daemon under real traffic fails its exit
// status.
package integration_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/internal/seccomp"
)

// echodPath is the binary TestMain built; constant while tests run.
var echodPath string

// bound limits every wait of these tests: a daemon that has not answered by
// then is hung, not slow (the -race build on 2 busy cores included).
const bound = 30 * time.Second

func TestMain(m *testing.M) {
	// Under seccomp.ExecCommand this process is only a launcher: install the
	// filter and exec echod, never returning here.
	if _, err := seccomp.ApplyFromEnv(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	// Likewise for the Docker profile in contrib/ (profile_test.go).
	if err := applyProfileFromEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: seccomp profile:", err)
		os.Exit(3)
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if err := raiseNoFile(); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "echod-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	echodPath = filepath.Join(dir, "echod")
	if err := buildEchod(echodPath); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "integration: goroutines left behind:", err)
			return 1
		}
	}
	return code
}

// buildEchod compiles ./cmd/echod into path, with -race when this test
// binary has it.
func buildEchod(path string) error {
	// `go test` puts its own go first on PATH for the test binary, so this
	// builds echod with the toolchain that builds the tests.
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("no go tool to build echod: %w", err)
	}
	args := []string{"build", "-o", path}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/oneshot-io/oneshot/cmd/echod")
	cmd := exec.Command(goTool, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %v: %w\n%s", args, err, out)
	}
	return nil
}

// noFile is the descriptor limit after raiseNoFile; constant while tests
// run. Tests that hold many sockets skip when it is too low for them.
var noFile uint64

// raiseNoFile lifts the soft descriptor limit to the hard one: the 2,000
// connection test holds that many sockets here, and echod, which inherits
// the limit, as many again.
func raiseNoFile() error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("setrlimit: %w", err)
		}
	}
	noFile = lim.Cur
	return nil
}

// needFiles skips t unless the descriptor limit allows n sockets in this
// process and n in echod, with room for everything else.
func needFiles(t *testing.T, n int) {
	t.Helper()
	if want := uint64(n + 200); noFile < want {
		t.Skipf("RLIMIT_NOFILE is %d; this test needs %d (raise the hard limit)", noFile, want)
	}
}
