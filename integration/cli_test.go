package integration_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestCommandLine runs the binary itself: bad flags exit 2 with one line on
// stderr; --version and --help exit 0 and print on stdout, where a pager or
// a script reads them, leaving stderr empty.
func TestCommandLine(t *testing.T) {
	tests := []struct {
		args     []string
		status   int
		contains string
		oneLine  bool
	}{
		{[]string{"--backend", "kqueue"}, 2, `--backend "kqueue": want auto, uring or epoll`, true},
		{[]string{"--listen", "nowhere"}, 2, `--listen "nowhere"`, true},
		{[]string{"--frobnicate"}, 2, "unknown flag --frobnicate", true},
		{[]string{"--max-pending", "lots"}, 2, `--max-pending "lots"`, true},
		{[]string{"--metrics-addr", "127.0.0.1:99999"}, 2, `--metrics-addr "127.0.0.1:99999": port "99999"`, true},
		{[]string{"--loops", "1000000"}, 2, "--loops 1000000: at most", true},
		{[]string{"--version"}, 0, "echod ", true},
		{[]string{"--help"}, 0, "Usage: echod [flags]", false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			// A command line echod wrongly accepted would serve on the
			// default 127.0.0.1:7007 until killed: the context kills it by
			// PID after bound, and Pdeathsig if this test process dies.
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			cmd := exec.CommandContext(ctx, echodPath, tt.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.Env = childEnv(nil)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			cmd.WaitDelay = bound
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			out, quiet, stream := stderr.String(), stdout.String(), "stderr"
			if tt.status == 0 {
				out, quiet, stream = quiet, out, "stdout"
			}
			if code != tt.status || !strings.Contains(out, tt.contains) {
				t.Fatalf("exit status %d, %s %q; want %d and %q", code, stream, out, tt.status, tt.contains)
			}
			if tt.oneLine && strings.Count(out, "\n") != 1 {
				t.Errorf("%s %q: want exactly one line", stream, out)
			}
			if quiet != "" {
				t.Errorf("output %q on the other stream: want everything on %s", quiet, stream)
			}
		})
	}
}
