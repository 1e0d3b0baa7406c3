package integration_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCompareScriptArgs runs scripts/compare.sh with --help and with
// arguments it must refuse, and checks that it exits at once (0 for help,
// 2 otherwise) having built, run and written nothing. The script runs from
// a copy in a scratch tree, so a results/ or bin/ directory it would create
// shows up there, and with go, make, cc, apt-get, taskset and perf on PATH
// replaced by stubs that log their calls.
func TestCompareScriptArgs(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash on PATH")
	}
	src, err := os.ReadFile(filepath.Join("..", "scripts", "compare.sh"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		stdout   string // a line the output must hold
		stderr   string
	}{
		{"help", []string{"--help"}, 0, "Environment:", ""},
		{"short help", []string{"-h"}, 0, "QUICK=1 scripts/compare.sh", ""},
		{"unknown flag", []string{"--bogus"}, 2, "", "unknown argument --bogus"},
		{"setting as argument", []string{"QUICK=1"}, 2, "", "settings are environment variables"},
		{"help after unknown", []string{"--bogus", "--help"}, 2, "", "unknown argument --bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			script := filepath.Join(root, "scripts", "compare.sh")
			if err := os.MkdirAll(filepath.Dir(script), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(script, src, 0o755); err != nil {
				t.Fatal(err)
			}
			stubs := t.TempDir()
			calls := filepath.Join(stubs, "calls.log")
			for _, tool := range []string{"go", "make", "cc", "gcc", "apt-get", "taskset", "perf", "dpkg"} {
				stub := "#!/bin/sh\necho \"$0 $*\" >>" + calls + "\nexit 1\n"
				if err := os.WriteFile(filepath.Join(stubs, tool), []byte(stub), 0o755); err != nil {
					t.Fatal(err)
				}
			}

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bash, append([]string{script}, tt.args...)...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "PATH="+stubs+string(os.PathListSeparator)+os.Getenv("PATH"))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("compare.sh %v still running after 10s: it started the matrix", tt.args)
			}
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, stdout.String())
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, stderr.String())
			}
			if tt.wantCode == 0 && stderr.Len() > 0 {
				t.Errorf("help wrote to stderr: %s", stderr.String())
			}
			if b, err := os.ReadFile(calls); err == nil {
				t.Errorf("compare.sh %v ran tools:\n%s", tt.args, b)
			}
			// Nothing but the script itself may be in the scratch tree.
			err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if rel, _ := filepath.Rel(root, path); rel != "." && rel != "scripts" && rel != filepath.Join("scripts", "compare.sh") {
					t.Errorf("compare.sh %v created %s", tt.args, rel)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCompareScriptHelpIsHeader checks that --help prints the script's
// header comment whole: its first and last lines, and no code.
func TestCompareScriptHelpIsHeader(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash on PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bash, filepath.Join("..", "scripts", "compare.sh"), "--help").Output()
	if err != nil {
		t.Fatalf("compare.sh --help: %v", err)
	}
	help := string(out)
	if !strings.HasPrefix(help, "compare.sh — ") {
		t.Errorf("help does not start with the header's first line:\n%s", help)
	}
	if !strings.Contains(help, "Every process this script starts is stopped by its PID on exit.") {
		t.Errorf("help lacks the header's last line:\n%s", help)
	}
	for _, code := range []string{"set -euo", "#!/", "usage()"} {
		if strings.Contains(help, code) {
			t.Errorf("help holds code %q:\n%s", code, help)
		}
	}
}
