// The tests of a main package live in it: a command cannot be imported.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestParseListenAddr(t *testing.T) {
	tests := []struct {
		in      string
		want    listenAddr
		wantErr string
	}{
		{in: "127.0.0.1:7007", want: listenAddr{"tcp", "127.0.0.1:7007"}},
		{in: ":7007", want: listenAddr{"tcp", ":7007"}},
		{in: "[::1]:0", want: listenAddr{"tcp", "[::1]:0"}},
		{in: "localhost:echo", wantErr: "not a number"},
		{in: "tcp4:0.0.0.0:7", want: listenAddr{"tcp4", "0.0.0.0:7"}},
		{in: "tcp6:[::]:7", want: listenAddr{"tcp6", "[::]:7"}},
		{in: "udp:127.0.0.1:0", want: listenAddr{"udp", "127.0.0.1:0"}},
		{in: "udp6:[::1]:7", want: listenAddr{"udp6", "[::1]:7"}},
		{in: "unix:/run/echod.sock", want: listenAddr{"unix", "/run/echod.sock"}},
		{in: "unix:rel/path:with:colons", want: listenAddr{"unix", "rel/path:with:colons"}},
		{in: "unix:", wantErr: "needs a socket path"},
		{in: "127.0.0.1", wantErr: "want HOST:PORT"},
		{in: "udp:127.0.0.1", wantErr: "want HOST:PORT"},
		{in: "sctp:1.2.3.4:5", wantErr: "want HOST:PORT"},
		{in: "127.0.0.1:65536", wantErr: "not a number from 0 to 65535"},
		{in: "127.0.0.1:-1", wantErr: "not a number"},
		{in: "127.0.0.1:007", want: listenAddr{"tcp", "127.0.0.1:7"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseListenAddr(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseListenAddr(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseListenAddr(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			// The startup line prints addresses with String; it must parse
			// back to the same address, or scripts could not reuse it.
			if back, err := parseListenAddr(got.String()); err != nil || back != got {
				t.Fatalf("parseListenAddr(%q.String() = %q) = %v, %v; want it back", tt.in, got.String(), back, err)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"0", 0, true},
		{"65536", 65536, true},
		{"64KiB", 64 << 10, true},
		{"64K", 64 << 10, true},
		{"1MiB", 1 << 20, true},
		{"3 MiB", 3 << 20, true},
		{"2GiB", 2 << 30, true},
		{"512B", 512, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5MiB", 0, false},
		{"MiB", 0, false},
		{"1TiB", 0, false},
		{"99999999999999GiB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok {
			if back, err := parseSize(formatSize(got)); err != nil || back != got {
				t.Errorf("parseSize(formatSize(%d) = %q) = %d, %v", got, formatSize(got), back, err)
			}
		}
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	cfg, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	want.listen = []listenAddr{{"tcp", "127.0.0.1:7007"}}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("parseFlags(nil) = %+v\nwant %+v", cfg, want)
	}
}

func TestParseFlagsValues(t *testing.T) {
	cfg, err := parseFlags([]string{
		"--listen", "127.0.0.1:0", "-listen=unix:/tmp/e.sock", "--listen", "udp:[::1]:0", "--listen", "127.0.0.1:0",
		"--backend", "epoll", "--io", "poll", "--loops", "3", "--lock-loops", "--kernel-wait=false", "--max-conns", "0", "--idle-timeout", "1m30s",
		"--max-pending", "64KiB", "--log-level", "debug", "--log-format", "console",
		"--metrics-addr", "127.0.0.1:0", "--pprof", "--shutdown-timeout", "250ms", "--udp-rate", "25",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		listen: []listenAddr{
			{"tcp", "127.0.0.1:0"}, {"unix", "/tmp/e.sock"}, {"udp", "[::1]:0"}, {"tcp", "127.0.0.1:0"},
		},
		backend: "epoll", io: "poll", loops: 3, lockLoops: true, maxConns: 0, idleTimeout: 90 * time.Second,
		maxPending: 64 << 10, udpRate: 25, logLevel: "debug", logFormat: "console",
		metricsAddr: "127.0.0.1:0", pprof: true, shutdownTimeout: 250 * time.Millisecond,
		probeTimeout: defaultProbeTimeout,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
	// A probe's command line: the server's flags keep their defaults.
	cfg, err = parseFlags([]string{"--probe", "udp:[::1]:007", "--probe-timeout", "500ms"})
	if err != nil {
		t.Fatal(err)
	}
	want = defaultConfig()
	want.listen = []listenAddr{{"tcp", defaultListen}}
	want.probe, want.probeTimeout = listenAddr{"udp", "[::1]:7"}, 500*time.Millisecond
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
}

// TestFlagLimits: the largest values the limits allow are accepted.
func TestFlagLimits(t *testing.T) {
	for _, args := range [][]string{
		{"--loops", strconv.Itoa(maxLoops())},
		{"--listen", "unix:/" + strings.Repeat("d", 106)}, // 107 bytes
		{"--listen", "unix:@" + strings.Repeat("a", 107)}, // 108 bytes, the @ included
		{"--metrics-addr", "127.0.0.1:65535"},
		{"--metrics-addr", "[::1]:0"},
	} {
		if _, err := parseFlags(args); err != nil {
			t.Errorf("parseFlags(%q): %v", args, err)
		}
	}
	if maxLoops() < runtime.NumCPU() {
		t.Errorf("maxLoops() = %d, fewer than the %d CPUs", maxLoops(), runtime.NumCPU())
	}
}

// TestBadFlags checks that every wrong command line exits 2 with exactly one
// line that names the flag and says what is wanted, before anything starts.
func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--backend", "io_uring"}, `--backend "io_uring": want auto, uring or epoll`},
		{[]string{"--backend"}, "--backend needs a value"},
		{[]string{"--io", "ring"}, `--io "ring": want auto or poll`},
		{[]string{"--recv-buffers", "1000"}, "--recv-buffers 1000: want a power of two up to 32768"},
		{[]string{"--bogus"}, "unknown flag --bogus"},
		{[]string{"-x"}, "unknown flag --x"},
		{[]string{"--listen", "7007"}, `--listen "7007": want HOST:PORT`},
		{[]string{"--listen", "localhost:99999"}, "not a number from 0 to 65535"},
		{[]string{"--listen", "unix:"}, "needs a socket path"},
		{[]string{"--listen", "fd:2"}, "from 3 up"},
		{[]string{"--listen", "fd:x"}, "inherited descriptor number"},
		{[]string{"--listen", "127.0.0.1:7007", "--listen", "127.0.0.1:7007"}, "given twice"},
		{[]string{"--loops", "-2"}, `--loops "-2": want a whole number`},
		{[]string{"--max-conns", "many"}, `--max-conns "many"`},
		{[]string{"--idle-timeout", "5"}, `--idle-timeout "5": want a duration`},
		{[]string{"--idle-timeout", "-1s"}, `--idle-timeout "-1s"`},
		{[]string{"--max-pending", "1x"}, `--max-pending "1x": want a byte count`},
		{[]string{"--max-pending", "0"}, "--max-pending must be more than 0"},
		{[]string{"--pprof"}, "--pprof needs --metrics-addr"},
		{[]string{"--udp-rate", "-1"}, `--udp-rate "-1": want a whole number`},
		{[]string{"--log-level", "verbose"}, `want debug, info, warn or error`},
		{[]string{"--log-format", "xml"}, `--log-format "xml": want json or console`},
		{[]string{"--metrics-addr", "9100"}, `--metrics-addr "9100": want HOST:PORT`},
		{[]string{"--metrics-addr", "127.0.0.1:99999"}, `--metrics-addr "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{[]string{"--metrics-addr", "127.0.0.1:-1"}, `port "-1" is not a number from 0 to 65535`},
		{[]string{"--metrics-addr", "localhost:http"}, `port "http" is not a number from 0 to 65535`},
		{[]string{"--loops", "1000000"}, fmt.Sprintf("--loops 1000000: at most %d", maxLoops())},
		{[]string{"--loops", strconv.Itoa(maxLoops() + 1)}, fmt.Sprintf("at most %d", maxLoops())},
		{[]string{"--listen", "unix:/" + strings.Repeat("d", 107)}, "108 bytes; Linux allows at most 107"},
		{[]string{"--listen", "unix:@" + strings.Repeat("a", 108)}, "109 bytes; Linux allows at most 108"},
		{[]string{"--shutdown-timeout", "0"}, "--shutdown-timeout must be more than 0"},
		{[]string{"--shutdown-timeout", "2000000h"}, "--shutdown-timeout 2000000h0m0s: at most 24h0m0s"},
		{[]string{"--recv-buffer-size", "1"}, "--recv-buffer-size 1: at least 512 (or 0, the reactor's default)"},
		{[]string{"--version=maybe"}, "--version takes no value"},
		{[]string{"127.0.0.1:7007"}, `unexpected argument "127.0.0.1:7007"`},
		{[]string{"--probe", "fd:3"}, `--probe "fd:3": an inherited descriptor cannot be dialed`},
		{[]string{"--probe", "127.0.0.1:0"}, `--probe "127.0.0.1:0": port 0 cannot be dialed`},
		{[]string{"--probe", "7007"}, `--probe "7007": want HOST:PORT`},
		{[]string{"--probe", "127.0.0.1:7007", "--loops", "2"}, "--probe takes no server flags (got --loops)"},
		{[]string{"--listen", "127.0.0.1:0", "--probe", "127.0.0.1:7007"}, "--probe takes no server flags (got --listen)"},
		{[]string{"--probe-timeout", "1s"}, "--probe-timeout needs --probe"},
		{[]string{"--probe", "127.0.0.1:7007", "--probe", "127.0.0.1:7008"}, `--probe "127.0.0.1:7008": given twice`},
		{[]string{"--probe", "127.0.0.1:7007", "--probe-timeout", "0"}, "--probe-timeout must be more than 0"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runWith(tt.args, &stdout, &stderr, nil, mustNotStart(t))
			if code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			if stdout.Len() != 0 {
				t.Errorf("a usage error wrote %q to stdout; it belongs on stderr", stdout.String())
			}
			out := stderr.String()
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") || !strings.HasPrefix(out, "echod: ") {
				t.Errorf("want one line starting with \"echod: \", got %q", out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("message %q does not contain %q", out, tt.want)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"Usage: echod [flags]", "--listen address", "--backend backend", "--max-pending bytes", "(default 1MiB)", "Exit status"}},
		{[]string{"-h"}, []string{"Usage: echod [flags]"}},
		{[]string{"--version"}, []string{"echod ", "linux/"}},
		{[]string{"--listen", "127.0.0.1:0", "--version"}, []string{"echod "}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			// Asked-for output goes to stdout, so that it pipes into a
			// pager or a script; stderr stays empty.
			var stdout, stderr bytes.Buffer
			if code := runWith(tt.args, &stdout, &stderr, nil, mustNotStart(t)); code != exitOK {
				t.Fatalf("exit status %d, want 0; stderr:\n%s", code, stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout does not contain %q:\n%s", w, stdout.String())
				}
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr %q: want nothing there", stderr.String())
			}
		})
	}
}

// TestHelpFitsATerminal keeps --help readable in an 80-column terminal.
func TestHelpFitsATerminal(t *testing.T) {
	var b bytes.Buffer
	printUsage(&b)
	for i, line := range strings.Split(b.String(), "\n") {
		if len(line) > 80 {
			t.Errorf("--help line %d is %d columns: %q", i+1, len(line), line)
		}
	}
}

// mustNotStart is a startFunc for command lines that must be refused before
// anything is served.
func mustNotStart(t *testing.T) startFunc {
	return func(config, *zap.Logger) (server, error) {
		t.Error("start called for a command line that should have been refused")
		return nil, errors.New("refused")
	}
}

// TestCloseTimeoutAboveShutdownTimeout: the reactor's bound on a flush that
// makes no progress must not end a graceful shutdown before
// --shutdown-timeout does, or a stuck peer's echo is dropped while echod
// exits 0. (With the reactor's 30s default, --shutdown-timeout 60s did so.)
func TestCloseTimeoutAboveShutdownTimeout(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, 10 * time.Second, 30 * time.Second, time.Minute, time.Hour, maxShutdownTimeout} {
		cfg := defaultConfig()
		cfg.shutdownTimeout = d
		lc := listenConfig(cfg)
		if lc.CloseTimeout <= d {
			t.Errorf("--shutdown-timeout %v: reactor CloseTimeout %v, want more", d, lc.CloseTimeout)
		}
		if lc.MaxConns != cfg.maxConns || lc.MaxPending != cfg.maxPending || lc.IdleTimeout != cfg.idleTimeout {
			t.Errorf("listen config %+v does not carry the flags %+v", lc, cfg)
		}
	}
}
