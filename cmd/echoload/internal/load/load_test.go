package load_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/cmd/echoload/internal/echotest"
	"github.com/oneshot-io/oneshot/cmd/echoload/internal/load"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startServer starts a test server and stops it when the test ends.
func startServer(t *testing.T, network string, f echotest.Fault) *echotest.Server {
	t.Helper()
	var s *echotest.Server
	var err error
	switch network {
	case "udp":
		s, err = echotest.ListenUDP()
	default:
		s, err = echotest.Listen(network, filepath.Join(t.TempDir(), "echo.sock"), f)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// echoedAtLeast polls s.Echoed until it reaches n or 2 s pass, and returns
// the last count.
func echoedAtLeast(s *echotest.Server, n int64) int64 {
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := s.Echoed()
		if got >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Millisecond)
	}
}

func baseConfig(network, addr string) load.Config {
	return load.Config{
		Network: network, Address: addr, Conns: 4, Size: 64, Pipeline: 1,
		Messages: 2000, Timeout: 5 * time.Second,
	}
}

// TestCounts checks that every message is counted once and that the
// server echoed exactly the bytes the report claims, in each mode.
func TestCounts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		network    string
		mod        func(*load.Config)
		minConnect time.Duration // connect phase at least this long
	}{
		{name: "tcp", network: "tcp"},
		{name: "tcp pipelined", network: "tcp", mod: func(c *load.Config) { c.Pipeline = 16 }},
		{name: "tcp large", network: "tcp", mod: func(c *load.Config) { c.Size, c.Messages, c.Pipeline = 16<<10, 400, 4 }},
		{name: "tcp uneven quota", network: "tcp", mod: func(c *load.Config) { c.Conns, c.Messages = 7, 1001 }},
		{name: "tcp open loop", network: "tcp", mod: func(c *load.Config) { c.Rate, c.Messages = 20000, 1000 }},
		{name: "tcp connect rate", network: "tcp", mod: func(c *load.Config) { c.ConnectRate, c.Conns, c.Messages = 200, 8, 800 }, minConnect: 35 * time.Millisecond},
		{name: "unix", network: "unix"},
		{name: "udp", network: "udp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.network, echotest.Fault{})
			cfg := baseConfig(tc.network, s.Addr())
			if tc.network == "unix" {
				cfg.Address = s.Addr()
			}
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			rep, err := load.Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Failed() {
				t.Fatalf("errors %v, first %q", rep.Errors, rep.FirstError)
			}
			if rep.Messages != cfg.Messages || rep.Bytes != cfg.Messages*int64(cfg.Size) {
				t.Fatalf("report has %d messages, %d bytes; want %d, %d", rep.Messages, rep.Bytes, cfg.Messages, cfg.Messages*int64(cfg.Size))
			}
			// The server counts a write after it returns, which can be
			// after the client has read it: wait, bounded, for the count.
			if got := echoedAtLeast(s, rep.Bytes); got != rep.Bytes {
				t.Fatalf("server echoed %d bytes, report says %d", got, rep.Bytes)
			}
			if n := rep.Latency; n.P50 <= 0 || n.P50 > n.P99 || n.P99 > n.Max {
				t.Fatalf("latency percentiles out of order: %+v", n)
			}
			if rep.Connected != cfg.Conns || rep.MsgsPerSec <= 0 {
				t.Fatalf("connected %d, %g msgs/s", rep.Connected, rep.MsgsPerSec)
			}
			if got := time.Duration(rep.ConnectSeconds * 1e9); got < tc.minConnect {
				t.Fatalf("connect phase %v, want >= %v (8 conns at 200/s)", got, tc.minConnect)
			}
		})
	}
}

// TestDuration checks that a timed run stops on time and counts warmup
// messages as echoed by the server but not in the report.
func TestDuration(t *testing.T) {
	s := startServer(t, "tcp", echotest.Fault{})
	cfg := baseConfig("tcp", s.Addr())
	cfg.Messages, cfg.Duration, cfg.Warmup = 0, 300*time.Millisecond, 100*time.Millisecond
	cfg.ServerPID = os.Getpid() // the in-test server runs in this process
	start := time.Now()
	rep, err := load.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 400*time.Millisecond || el > 3*time.Second {
		t.Fatalf("a 100ms+300ms run took %v", el)
	}
	if rep.Failed() || rep.Messages == 0 {
		t.Fatalf("messages %d, errors %v", rep.Messages, rep.Errors)
	}
	if got := echoedAtLeast(s, rep.Bytes+1); got <= rep.Bytes {
		t.Fatalf("server echoed %d bytes, report %d: warmup bytes should be extra", got, rep.Bytes)
	}
	if rep.ElapsedSeconds < 0.25 || rep.ElapsedSeconds > 1 {
		t.Fatalf("measured phase %gs, want about 0.3s", rep.ElapsedSeconds)
	}
	if rep.CPU == nil || rep.CPU.ClientSeconds <= 0 {
		t.Fatalf("no client CPU time: %+v", rep.CPU)
	}
	if c := rep.CPU; c.ServerSeconds == nil || *c.ServerSeconds <= 0 || c.ServerSwitchesPerMsg == nil || c.ServerError != "" {
		t.Fatalf("server CPU from /proc/self: %+v", *c)
	}
	if c := rep.CPU; c.ServerUserUSPerMsg == nil || *c.ServerUserUSPerMsg < 0 || *c.ServerUserUSPerMsg > *c.ServerUSPerMsg {
		t.Fatalf("server CPU in user mode from /proc/self: %+v, want between 0 and the whole", *c)
	}
}

// TestServerGone checks that a server PID without a /proc entry is reported
// as such rather than as zero CPU.
func TestServerGone(t *testing.T) {
	s := startServer(t, "tcp", echotest.Fault{})
	cfg := baseConfig("tcp", s.Addr())
	cfg.ServerPID = 1 << 30 // above pid_max
	rep, err := load.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.CPU == nil || rep.CPU.ServerUSPerMsg != nil || !strings.Contains(rep.CPU.ServerError, "/proc/") {
		t.Fatalf("cpu %+v", rep.CPU)
	}
}

// TestDetectsFaults checks that each kind of broken server is caught and
// counted under its kind, in both the one-goroutine and the pipelined path.
func TestDetectsFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault echotest.Fault
		want  load.Kind
		count int64 // exact count of want, where the fault fixes it
	}{
		// One byte of one connection's stream: exactly one mismatch.
		{"corrupt byte", echotest.Fault{CorruptAt: 64*50 + 7}, load.KindMismatch, 1},
		{"reset", echotest.Fault{ResetAt: 64 * 30}, load.KindReset, 0},
		{"short read", echotest.Fault{ShortAt: 64*30 + 10}, load.KindShortRead, 0},
		// Every connection gets one stale echo: one mismatch each.
		{"stale replay", echotest.Fault{ReplayAt: 64 * 40}, load.KindMismatch, 4},
		{"hang", echotest.Fault{HangAt: 64 * 30}, load.KindTimeout, 0},
	} {
		for _, pipeline := range []int{1, 8} {
			t.Run(fmt.Sprintf("%s/pipeline=%d", tc.name, pipeline), func(t *testing.T) {
				s := startServer(t, "tcp", tc.fault)
				cfg := baseConfig("tcp", s.Addr())
				cfg.Pipeline, cfg.Timeout = pipeline, 300*time.Millisecond
				rep, err := load.Run(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				if !rep.Failed() || rep.Errors[tc.want] == 0 {
					t.Fatalf("want a %s error; errors %v, first %q", tc.want, rep.Errors, rep.FirstError)
				}
				if !strings.HasPrefix(rep.FirstError, string(tc.want)+":") {
					t.Fatalf("first error %q, want kind %s", rep.FirstError, tc.want)
				}
				if tc.count > 0 && rep.Errors[tc.want] != tc.count {
					t.Fatalf("%d %s errors counted, want %d", rep.Errors[tc.want], tc.want, tc.count)
				}
				// Where the fault touched one connection, the other three
				// finish their share.
				if tc.count == 1 && rep.Messages < cfg.Messages*3/4-64 {
					t.Fatalf("only %d of %d messages echoed", rep.Messages, cfg.Messages)
				}
			})
		}
	}
}

// TestOpenLoopShowsStall checks that with --rate a server that stalls
// every connection once for stall shows it in the tail (p99.9 >= stall)
// and well into the body of the distribution, while the same server under
// closed loop hides all but the stalled messages themselves.
func TestOpenLoopShowsStall(t *testing.T) {
	const stall = 300 * time.Millisecond
	fault := echotest.Fault{StallAt: 64 * 50, StallFor: stall}
	run := func(rate float64) load.Report {
		s := startServer(t, "tcp", fault)
		cfg := baseConfig("tcp", s.Addr())
		cfg.Rate, cfg.Messages = rate, 1000
		rep, err := load.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Failed() || rep.Messages != cfg.Messages {
			t.Fatalf("rate %g: %d messages, errors %v", rate, rep.Messages, rep.Errors)
		}
		return rep
	}
	openRep := run(2000)
	// The writers were held up by the stall: the send lag says so.
	if l := openRep.SendLag; l == nil || l.Max < float64(stall.Microseconds())/2 {
		t.Errorf("open loop send lag %+v: want a max near the %v stall", l, stall)
	}
	open := openRep.Latency
	stallUS := float64(stall.Microseconds())
	if open.P999 < stallUS {
		t.Errorf("open loop p99.9 %.0fµs < stall %.0fµs", open.P999, stallUS)
	}
	// Each connection sends 500 msgs/s, so ~150 of its 250 messages are
	// due during the stall: most of the distribution is delayed.
	if open.P90 < stallUS/4 {
		t.Errorf("open loop p90 %.0fµs: the stall is hidden (want >= %.0fµs)", open.P90, stallUS/4)
	}
	// Closed loop, the same stall delays only the 4 messages in flight
	// (coordinated omission): its p99 stays below the open loop's p90.
	closed := run(0).Latency
	if closed.P99 >= open.P90 {
		t.Errorf("closed loop p99 %.0fµs >= open loop p90 %.0fµs: expected the stall hidden from all but 4 messages", closed.P99, open.P90)
	}
	if closed.Max < stallUS {
		t.Errorf("closed loop max %.0fµs < stall", closed.Max)
	}
}

// TestBelowRate checks that a run whose schedule the server could not keep
// (a 300 ms stall in a 200 ms schedule) is flagged, and one it kept is not.
func TestBelowRate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault echotest.Fault
		below bool
	}{
		{"stalled", echotest.Fault{StallAt: 64 * 25, StallFor: 300 * time.Millisecond}, true},
		{"kept up", echotest.Fault{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, "tcp", tc.fault)
			cfg := baseConfig("tcp", s.Addr())
			// One second of schedule: "kept up" tolerates 50 ms of
			// hiccups; the stall leaves ~0.5 s of 0.2 s worth.
			cfg.Rate, cfg.Messages = 1000, 1000
			if tc.below {
				cfg.Messages = 200
			}
			rep, err := load.Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Failed() || rep.BelowRate != tc.below {
				t.Fatalf("below rate %v (%.0f msgs/s of %g), want %v; errors %v", rep.BelowRate, rep.MsgsPerSec, cfg.Rate, tc.below, rep.Errors)
			}
		})
	}
}

// TestInterrupt checks that cancelling the context ends a long run
// promptly, without counting the errors the stop itself causes.
func TestInterrupt(t *testing.T) {
	s := startServer(t, "tcp", echotest.Fault{})
	cfg := baseConfig("tcp", s.Addr())
	cfg.Messages, cfg.Duration, cfg.Pipeline = 0, time.Minute, 4
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := load.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("interrupted run took %v", el)
	}
	if !rep.Interrupted || rep.ErrorTotal != 0 {
		t.Fatalf("interrupted %v, errors %v (%q)", rep.Interrupted, rep.Errors, rep.FirstError)
	}
}

// TestRateAboveReachEnds: an open-loop rate far above what the machine
// sends leaves the pacer behind schedule, where it never sleeps; the run
// must still end at its duration, and at once when its context ends. It
// once spun past both, at 100% CPU, until killed.
func TestRateAboveReachEnds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		duration time.Duration
		ctx      time.Duration // the context's timeout; 0: none
	}{
		{"duration", 200 * time.Millisecond, 0},
		{"interrupt", time.Minute, 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, "tcp", echotest.Fault{})
			cfg := baseConfig("tcp", s.Addr())
			cfg.Messages, cfg.Duration, cfg.Rate = 0, tc.duration, load.MaxRate
			ctx := context.Background()
			if tc.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctx)
				defer cancel()
			}
			type result struct {
				rep load.Report
				err error
			}
			done := make(chan result, 1)
			go func() {
				rep, err := load.Run(ctx, cfg)
				done <- result{rep, err}
			}()
			var rep load.Report
			select {
			case r := <-done:
				if r.err != nil {
					t.Fatal(r.err)
				}
				rep = r.rep
			case <-time.After(10 * time.Second):
				t.Fatalf("the run (duration %v, context timeout %v) still going after 10s", tc.duration, tc.ctx)
			}
			if !rep.BelowRate {
				t.Fatalf("a run at %g msgs/s kept its schedule: %+v", load.MaxRate, rep)
			}
		})
	}
}

func TestNoServer(t *testing.T) {
	s := startServer(t, "tcp", echotest.Fault{})
	addr := s.Addr()
	s.Close()
	cfg := baseConfig("tcp", addr)
	rep, err := load.Run(context.Background(), cfg)
	if !errors.Is(err, load.ErrNoConnections) {
		t.Fatalf("err %v, want ErrNoConnections", err)
	}
	if rep.Errors[load.KindConnect] != int64(cfg.Conns) {
		t.Fatalf("connect errors %d, want %d", rep.Errors[load.KindConnect], cfg.Conns)
	}
}

func TestValidate(t *testing.T) {
	good := baseConfig("tcp", "127.0.0.1:1")
	for _, tc := range []struct {
		name string
		mod  func(*load.Config)
	}{
		{"network", func(c *load.Config) { c.Network = "sctp" }},
		{"address", func(c *load.Config) { c.Address = "" }},
		{"conns", func(c *load.Config) { c.Conns = 0 }},
		{"size", func(c *load.Config) { c.Size = 0 }},
		{"udp size", func(c *load.Config) { c.Network, c.Size = "udp", load.MaxDatagram+1 }},
		{"pipeline", func(c *load.Config) { c.Pipeline = 0 }},
		{"no end", func(c *load.Config) { c.Messages, c.Duration = 0, 0 }},
		{"rate", func(c *load.Config) { c.Rate = -1 }},
		{"rate NaN", func(c *load.Config) { c.Rate = math.NaN() }},
		{"rate Inf", func(c *load.Config) { c.Rate = math.Inf(1) }},
		{"rate above MaxRate", func(c *load.Config) { c.Rate = load.MaxRate * 2 }},
		{"rate below MinRate", func(c *load.Config) { c.Rate = 1e-300 }},
		{"conns above MaxConns", func(c *load.Config) { c.Conns = load.MaxConns + 1 }},
		{"connect rate NaN", func(c *load.Config) { c.ConnectRate = math.NaN() }},
		{"timeout", func(c *load.Config) { c.Timeout = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			if err := c.Validate(); !errors.Is(err, load.ErrBadConfig) {
				t.Fatalf("Validate: %v, want ErrBadConfig", err)
			}
		})
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
}

// TestHGRM checks the .hgrm output has the header plotters look for and
// ends with the summary lines.
func TestHGRM(t *testing.T) {
	s := startServer(t, "tcp", echotest.Fault{})
	rep, err := load.Run(context.Background(), baseConfig("tcp", s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := rep.WriteHGRM(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"Value", "Percentile", "TotalCount", "1/(1-Percentile)", "#[Mean", "#[Max", "Total count    =         2000"} {
		if !strings.Contains(out, want) {
			t.Errorf(".hgrm lacks %q:\n%s", want, out)
		}
	}
}

// TestSummaryUnits checks that the summary prints a latency below 10 ms in
// µs and one from 10 ms up in ms, each with its unit, while the JSON keeps
// microseconds.
func TestSummaryUnits(t *testing.T) {
	rep := load.Report{
		Config:  load.Config{Network: "tcp", Address: "127.0.0.1:7", Conns: 1, Size: 64, Pipeline: 1, Duration: time.Second},
		Latency: load.Latency{P50: 812.44, P90: 9999.9, P99: 10_000, P999: 123_456.7, Max: 2_149_580.8, Mean: 9.96},
		SendLag: &load.SendLag{Mean: 15.25, Max: 31_000},
	}
	var b bytes.Buffer
	if err := rep.WriteSummary(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"p50 812.4us  p90 9999.9us  p99 10.0ms  p99.9 123.5ms  max 2149.6ms  (mean 10.0us)",
		"send lag    mean 15.2us  max 31.0ms",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"max": 2149580.8`) {
		t.Errorf("JSON max latency not in µs:\n%s", b.String())
	}
}
