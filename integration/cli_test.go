package integration_test

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestCommandLine runs the binary itself: bad flags exit 2 with one line,
// --version and --help exit 0.
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
		{[]string{"--version"}, 0, "echod ", true},
		{[]string{"--help"}, 0, "Usage: echod [flags]", false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			cmd := exec.Command(echodPath, tt.args...)
			cmd.Stderr = &stderr
			cmd.Env = childEnv(nil)
			cmd.WaitDelay = bound
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			out := stderr.String()
			if code != tt.status || !strings.Contains(out, tt.contains) {
				t.Fatalf("exit status %d, stderr %q; want %d and %q", code, out, tt.status, tt.contains)
			}
			if tt.oneLine && strings.Count(out, "\n") != 1 {
				t.Errorf("stderr %q: want exactly one line", out)
			}
		})
	}
}
