package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/cmd/echoload/internal/echotest"
	"go.uber.org/goleak"
)

// bin is the echoload binary built once for every test here.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "echoload-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "echoload")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := 0
	func() {
		defer os.RemoveAll(dir)
		code = m.Run()
		if err := goleak.Find(); err != nil && code == 0 {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}()
	os.Exit(code)
}

// runBound is the longest any echoload run here may take: every run is
// bounded by its own --duration or --messages and --timeout, so one that
// is still going then is hung, and is killed by its PID.
const runBound = time.Minute

// command is exec.Command for the echoload under test, killed by its PID
// after runBound, or when this test process dies (Pdeathsig).
func command(t *testing.T, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), runBound)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// echoload runs the binary and returns its exit status, stdout and stderr.
func echoload(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := command(t, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("running echoload: %v", err)
	return 0, "", ""
}

func server(t *testing.T, f echotest.Fault) string {
	t.Helper()
	s, err := echotest.Listen("tcp", "", f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s.Addr()
}

// TestBadFlags checks that every bad command line exits 2 with one line.
func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--nope"},
		{"--conns", "0"},
		{"--conns", "x"},
		{"--size", "0"},
		{"--size", "12q"},
		{"--pipeline", "0"},
		{"--duration", "1s", "--messages", "5"},
		{"--duration", "0s"},
		{"--messages", "0"},
		{"--rate", "-5"},
		{"--rate", "NaN"},
		{"--rate", "Inf"},
		{"--rate", "1e12"},
		{"--rate", "1e-300"},
		{"--conns", "1000000000"},
		{"--connect-rate", "NaN"},
		{"--size", "2GiB"},
		{"--addr", "udp:127.0.0.1:1", "--size", "70000"},
		{"--addr", ""},
		{"--addr", "localhost"},
		{"--addr", "127.0.0.1:0"},
		{"--addr", "udp:127.0.0.1:http"},
		{"--addr", "unix:"},
		{"--server-pid", "0"},
		{"--timeout", "0s"},
		{"stray"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := echoload(t, args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, stderr)
			}
			if stdout != "" || !strings.HasPrefix(stderr, "echoload: ") || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("want one line on stderr and nothing on stdout; stdout %q stderr %q", stdout, stderr)
			}
		})
	}
}

// TestBadFlagSpelling checks that errors name flags the way --help shows
// them (--conns, not the flag package's -conns).
func TestBadFlagSpelling(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nope"}, "unknown flag --nope"},
		{[]string{"--conns", "x"}, `invalid value "x" for --conns`},
		{[]string{"--addr"}, "a value is missing after --addr"},
		{[]string{"--json=maybe"}, `invalid boolean value "maybe" for --json`},
		{[]string{"--conns", "0"}, "--conns 0: want between 1 and 1048576"},
		{[]string{"--pipeline", "-1"}, "--pipeline -1: want >= 1"},
		{[]string{"--connect-rate", "-2"}, "--connect-rate -2: want a finite number >= 0"},
		{[]string{"--rate", "Inf"}, "--rate +Inf: want 0 (closed loop) or between 0.001 and 1e+09"},
		{[]string{"--server-pid", "-3"}, "--server-pid -3: want a process ID >= 1"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := echoload(t, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	code, stdout, _ := echoload(t, "--help")
	if code != 0 {
		t.Fatalf("exit %d, usage %q", code, stdout)
	}
	// Every flag parse accepts, so that none is accepted but undocumented.
	for _, f := range []string{"--addr", "--conns", "--size", "--pipeline", "--duration", "--messages",
		"--rate", "--warmup", "--connect-rate", "--timeout", "--server-pid", "--seed", "--json", "--hgrm", "--quiet",
		"--version"} {
		if !strings.Contains(stdout, "  "+f+" ") {
			t.Errorf("--help does not list %s", f)
		}
	}
	// An open-loop run sends every message scheduled in its duration,
	// however late: a user must not be surprised that it runs longer.
	if !strings.Contains(stdout, "outlasts --duration") {
		t.Errorf("--help does not say that an open-loop run may outlast --duration:\n%s", stdout)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, stderr := echoload(t, "--version")
	if code != 0 || !strings.HasPrefix(stdout, "echoload ") || !strings.Contains(stdout, " linux/") ||
		strings.Count(stdout, "\n") != 1 || stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and one line \"echoload VERSION GO linux/ARCH\"", code, stdout, stderr)
	}
}

// TestRefusedBeforeTheRun checks that an --hgrm file that cannot be created
// and a --server-pid that names no process are refused with exit 2 before
// echoload dials: the listener has no connection waiting when it exits. A
// minute-long run is asked for, so that a check made only after the run
// would show as a timeout, not a pass.
func TestRefusedBeforeTheRun(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	// PIDs are below pid_max, so pid_max itself names no process.
	noPID := strings.TrimSpace(string(b))
	missing := filepath.Join(t.TempDir(), "no-such-dir", "lat.hgrm")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--hgrm", missing}, "echoload: --hgrm: open " + missing + ": no such file or directory\n"},
		{[]string{"--hgrm", t.TempDir()}, "echoload: --hgrm: open "},
		{[]string{"--server-pid", noPID}, "echoload: --server-pid " + noPID + ": no such process"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			args := append([]string{"--addr", ln.Addr().String(), "--duration", "1m", "--warmup", "0s"}, tc.args...)
			code, stdout, stderr := echoload(t, args...)
			if code != 2 || !strings.HasPrefix(stderr, tc.want) || strings.Count(stderr, "\n") != 1 || stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and one line starting %q", code, stdout, stderr, tc.want)
			}
			// A connection echoload made, even one it closed, would wait
			// in the accept queue.
			ln.(*net.TCPListener).SetDeadline(time.Now())
			if c, err := ln.Accept(); err == nil {
				c.Close()
				t.Fatal("echoload connected before refusing its flags")
			}
		})
	}
	if _, err := os.Stat(filepath.Dir(missing)); !os.IsNotExist(err) {
		t.Errorf("the missing directory was created: %v", err)
	}
}

// TestExitStatus runs the binary against good and broken servers.
func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault echotest.Fault
		code  int
		kind  string
	}{
		{"intact", echotest.Fault{}, 0, ""},
		{"corrupt", echotest.Fault{CorruptAt: 64*20 + 3}, 1, "mismatch"},
		{"reset", echotest.Fault{ResetAt: 64 * 20}, 1, "reset"},
		{"short", echotest.Fault{ShortAt: 64*20 + 1}, 1, "short_read"},
		{"stall", echotest.Fault{HangAt: 64 * 20}, 1, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := server(t, tc.fault)
			hgrm := filepath.Join(t.TempDir(), "lat.hgrm")
			code, stdout, stderr := echoload(t, "--addr", addr, "--conns", "2", "--messages", "500",
				"--warmup", "0s", "--timeout", "300ms", "--json", "--hgrm", hgrm)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, stderr)
			}
			var rep struct {
				Messages   int64            `json:"messages"`
				Errors     map[string]int64 `json:"errors"`
				ErrorTotal int64            `json:"error_total"`
				Config     struct {
					Conns int `json:"conns"`
				} `json:"config"`
			}
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatalf("--json output is not one JSON object: %v\n%s", err, stdout)
			}
			if rep.Config.Conns != 2 {
				t.Fatalf("config not in the JSON: %s", stdout)
			}
			if tc.kind == "" {
				if rep.Messages != 500 || rep.ErrorTotal != 0 {
					t.Fatalf("messages %d errors %v", rep.Messages, rep.Errors)
				}
			} else if rep.Errors[tc.kind] == 0 || !strings.Contains(stderr, tc.kind) {
				t.Fatalf("want %s reported; errors %v, stderr %q", tc.kind, rep.Errors, stderr)
			}
			b, err := os.ReadFile(hgrm)
			if err != nil || !strings.Contains(string(b), "1/(1-Percentile)") {
				t.Fatalf("--hgrm file: %v\n%s", err, b)
			}
		})
	}
}

// TestSummary checks the human summary's figures and that no progress
// line is drawn when stdout is not a terminal.
func TestSummary(t *testing.T) {
	addr := server(t, echotest.Fault{})
	code, stdout, stderr := echoload(t, "--addr", addr, "--messages", "300", "--warmup", "0s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"300 msgs", "msgs/s", "MB/s", "p50", "p90", "p99", "p99.9", "max", "errors      none"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "\r") {
		t.Errorf("progress line drawn on a pipe:\n%q", stdout)
	}
}

// TestInterruptedRun checks that SIGINT in the middle of a run prints the
// figures so far, says on stderr that the run was cut short (not "0
// errors"), and exits 1 so that a script does not take it for a full run.
func TestInterruptedRun(t *testing.T) {
	s, err := echotest.Listen("tcp", "", echotest.Fault{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	cmd := command(t, "--addr", s.Addr(), "--duration", "1m", "--warmup", "0s")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Echoes mean echoload is past its signal set-up and measuring.
	deadline := time.Now().Add(runBound / 2)
	for s.Echoed() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("echoload sent nothing")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("wait: %v; want exit status 1", err)
	}
	if !strings.Contains(stdout.String(), "interrupted before the end") || !strings.Contains(stdout.String(), "errors      none") {
		t.Errorf("summary %q: want the figures so far, no errors, marked interrupted", stdout.String())
	}
	if got := stderr.String(); !strings.HasPrefix(got, "echoload: interrupted before the end") || strings.Count(got, "\n") != 1 {
		t.Errorf("stderr %q: want one line saying the run was interrupted", got)
	}
}
