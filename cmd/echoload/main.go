//go:build linux

// Command echoload is a load generator for echo servers (TCP, Unix stream
// sockets, UDP). It checks every echoed byte, measures latency into an HDR
// histogram, and reports msgs/s, MB/s, p50/p90/p99/p99.9/max and errors by
// kind; any error makes the exit status non-zero.
//
//	echoload --conns 100 --size 64 --duration 10s   # echod's default 127.0.0.1:7007
//	echoload --addr unix:/run/echod.sock --rate 20000 --json
//	echoload --addr udp:127.0.0.1:7007 --messages 100000 --hgrm lat.hgrm
//
// Exit status: 0 when every message came back intact, 1 when any error was
// seen (mismatch, short read, reset, timeout, connect), the run could not
// happen or it was interrupted, 2 for a bad command line (an --hgrm file
// that cannot be created and a --server-pid with no process included: both
// are refused before any load starts).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/cmd/echoload/internal/load"
	"github.com/oneshot-io/oneshot/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stdout))
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// defaultAddr is echod's own default --listen, so that `make run` in one
// terminal and a bare `echoload` in another talk to each other.
const defaultAddr = "127.0.0.1:7007"

// options are the command line beyond load.Config.
type options struct {
	cfg     load.Config
	json    bool
	hgrm    string
	quiet   bool
	version bool
}

// parse turns args into options; the error is one line for the user.
func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("echoload", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", defaultAddr, "server: host:port (TCP), unix:/path, or udp:host:port")
	fs.IntVar(&o.cfg.Conns, "conns", 1, "connections")
	size := fs.String("size", "64", "bytes per message (suffixes k/KiB, m/MiB, g/GiB)")
	fs.IntVar(&o.cfg.Pipeline, "pipeline", 1, "messages in flight per connection")
	fs.DurationVar(&o.cfg.Duration, "duration", 0, "length of the measured phase (default 10s unless --messages)")
	fs.Int64Var(&o.cfg.Messages, "messages", 0, "end after this many measured messages in total")
	fs.Float64Var(&o.cfg.Rate, "rate", 0, "total messages/s, open loop: latency from each message's intended send time (0: closed loop)")
	fs.DurationVar(&o.cfg.Warmup, "warmup", time.Second, "checked but uncounted load before the measured phase")
	fs.Float64Var(&o.cfg.ConnectRate, "connect-rate", 0, "new connections per second (0: as fast as possible)")
	fs.DurationVar(&o.cfg.Timeout, "timeout", 5*time.Second, "longest wait for a dial, a write or an echo")
	fs.IntVar(&o.cfg.ServerPID, "server-pid", 0, "the server's PID: report its CPU time per message from /proc")
	fs.Uint64Var(&o.cfg.Seed, "seed", 0, "payload seed")
	fs.BoolVar(&o.json, "json", false, "print one JSON object with every figure and the config instead of the summary")
	fs.StringVar(&o.hgrm, "hgrm", "", "write the latency distribution (.hgrm percentile text, µs) to this file")
	fs.BoolVar(&o.quiet, "quiet", false, "no live progress line")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) { // -h/--help
			return o, err
		}
		return o, errors.New(flagSpelling.Replace(err.Error()))
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.version {
		return o, nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// The bounds Config.Validate checks, said here in the flags' own names.
	for _, c := range []struct {
		flag string
		bad  bool
		val  any
		want string
	}{
		{"conns", o.cfg.Conns < 1 || o.cfg.Conns > load.MaxConns, o.cfg.Conns, fmt.Sprintf("between 1 and %d", load.MaxConns)},
		{"pipeline", o.cfg.Pipeline < 1, o.cfg.Pipeline, ">= 1"},
		{"rate", !load.RateOK(o.cfg.Rate), o.cfg.Rate, fmt.Sprintf("0 (closed loop) or between %g and %g", load.MinRate, load.MaxRate)},
		{"warmup", o.cfg.Warmup < 0, o.cfg.Warmup, ">= 0"},
		{"connect-rate", !(o.cfg.ConnectRate >= 0) || math.IsInf(o.cfg.ConnectRate, 0), o.cfg.ConnectRate, "a finite number >= 0"},
		{"timeout", o.cfg.Timeout <= 0, o.cfg.Timeout, "> 0"},
		{"server-pid", set["server-pid"] && o.cfg.ServerPID < 1, o.cfg.ServerPID, "a process ID >= 1"},
	} {
		if c.bad {
			return o, fmt.Errorf("--%s %v: want %s", c.flag, c.val, c.want)
		}
	}
	if set["duration"] && set["messages"] {
		return o, errors.New("give --duration or --messages, not both")
	}
	if !set["messages"] && !set["duration"] {
		o.cfg.Duration = 10 * time.Second
	}
	if set["messages"] && o.cfg.Messages < 1 {
		return o, errors.New("--messages must be >= 1")
	}
	if set["duration"] && o.cfg.Duration <= 0 {
		return o, errors.New("--duration must be > 0")
	}
	var err error
	if o.cfg.Size, err = parseSize(*size); err != nil {
		return o, fmt.Errorf("--size: %w", err)
	}
	o.cfg.Network, o.cfg.Address = splitAddr(*addr)
	if err := checkAddr(o.cfg.Network, o.cfg.Address); err != nil {
		return o, fmt.Errorf("--addr %q: %w", *addr, err)
	}
	if err := o.cfg.Validate(); err != nil {
		return o, err
	}
	// A server PID read only at the end of the warmup would be found
	// missing after the connections are up; refuse it now instead.
	if o.cfg.ServerPID > 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", o.cfg.ServerPID)); err != nil {
			return o, fmt.Errorf("--server-pid %d: no such process (%w)", o.cfg.ServerPID, err)
		}
	}
	return o, nil
}

// splitAddr maps the --addr forms to a network and an address.
func splitAddr(a string) (network, address string) {
	if p, ok := strings.CutPrefix(a, "unix:"); ok {
		return "unix", p
	}
	if p, ok := strings.CutPrefix(a, "udp:"); ok {
		return "udp", p
	}
	if p, ok := strings.CutPrefix(a, "tcp:"); ok {
		return "tcp", p
	}
	return "tcp", a
}

// flagSpelling rewrites the flag package's messages in the --flag spelling
// --help uses: "flag provided but not defined: -bogus" becomes "unknown flag
// --bogus", "invalid value "x" for flag -conns: parse error" becomes
// "invalid value "x" for --conns".
var flagSpelling = strings.NewReplacer(
	"flag provided but not defined: -", "unknown flag --",
	"flag needs an argument: -", "a value is missing after --",
	" for flag -", " for --",
	" for -", " for --",
	": parse error", "",
)

// checkAddr refuses, before any load starts, an address that could only
// fail at dial time: a TCP or UDP one without a port, or with port 0.
func checkAddr(network, address string) error {
	if network == "unix" {
		if address == "" {
			return errors.New("unix: needs a socket path")
		}
		return nil
	}
	_, port, err := net.SplitHostPort(address)
	if err != nil {
		return errors.New("want host:port, unix:/path or udp:host:port")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port %q: want a number from 1 to 65535", port)
	}
	return nil
}

// parseSize reads a byte count: 64, 16k, 16KiB, 1m, 1MiB.
func parseSize(s string) (int, error) {
	mult := 1
	lower := strings.ToLower(s)
	for _, suf := range []struct {
		s string
		m int
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}} {
		if p, ok := strings.CutSuffix(lower, suf.s); ok {
			lower, mult = p, suf.m
			break
		}
	}
	n, err := strconv.Atoi(lower)
	if err != nil || n < 1 || n > (1<<30)/mult {
		return 0, fmt.Errorf("%q is not a byte count between 1 and 1GiB", s)
	}
	return n * mult, nil
}

// run is echoload minus the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) int {
	o, err := parse(args)
	if errors.Is(err, flag.ErrHelp) {
		usage(stdout)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "echoload: %v (see --help)\n", err)
		return exitUsage
	}
	if o.version {
		fmt.Fprintln(stdout, version.String("echoload"))
		return exitOK
	}
	// The --hgrm file is created before the run, so that a path that cannot
	// be written fails now and not after the whole measurement.
	var hgrm *os.File
	if o.hgrm != "" {
		if hgrm, err = os.Create(o.hgrm); err != nil {
			fmt.Fprintf(stderr, "echoload: --hgrm: %v\n", err)
			return exitUsage
		}
		defer func() {
			if hgrm != nil { // not written: leave no empty file behind
				hgrm.Close()
				os.Remove(o.hgrm)
			}
		}()
	}
	if tty && !o.quiet && !o.json {
		o.cfg.Progress = func(p load.Progress) {
			phase := "run"
			if p.Warmup {
				phase = "warmup"
			}
			fmt.Fprintf(stdout, "\r\x1b[K%6.1fs %-6s %10.0f msgs/s  %d msgs  %d errors",
				p.Elapsed.Seconds(), phase, p.PerSec, p.Messages, p.Errors)
		}
	}
	rep, err := load.Run(ctx, o.cfg)
	if o.cfg.Progress != nil {
		fmt.Fprint(stdout, "\r\x1b[K")
	}
	if err != nil && !errors.Is(err, load.ErrNoConnections) {
		fmt.Fprintf(stderr, "echoload: %v\n", err)
		return exitFail
	}
	if o.json {
		if werr := rep.WriteJSON(stdout); werr != nil {
			fmt.Fprintf(stderr, "echoload: %v\n", werr)
			return exitFail
		}
	} else if werr := rep.WriteSummary(stdout); werr != nil {
		fmt.Fprintf(stderr, "echoload: %v\n", werr)
		return exitFail
	}
	if hgrm != nil {
		f := hgrm
		hgrm = nil // written, or the error below says why not
		if herr := writeHGRM(f, &rep); herr != nil {
			fmt.Fprintf(stderr, "echoload: %v\n", herr)
			return exitFail
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "echoload: %v\n", err)
		return exitFail
	}
	switch {
	case rep.ErrorTotal > 0:
		fmt.Fprintf(stderr, "echoload: %d errors; first: %s\n", rep.ErrorTotal, rep.FirstError)
		return exitFail
	case rep.Interrupted:
		// Not a clean run either: a script must not take its figures for
		// the full measurement it asked for.
		fmt.Fprintln(stderr, "echoload: interrupted before the end; the figures cover only the part that ran")
		return exitFail
	}
	return exitOK
}

// writeHGRM writes rep's latency distribution to f and closes it.
func writeHGRM(f *os.File, rep *load.Report) error {
	if err := rep.WriteHGRM(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	return f.Close()
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: echoload [flags]

Load-tests an echo server and checks every byte that comes back.
  --addr ADDR          host:port (TCP), unix:/path, udp:host:port
                       (default 127.0.0.1:7007, echod's default)
  --conns N            connections (default 1)
  --size N             bytes per message; 16k or 16KiB accepted (default 64)
  --pipeline N         messages in flight per connection (default 1)
  --duration D         measured phase length (default 10s)
  --messages N         or: stop after N measured messages in total
  --rate R             total msgs/s, open loop; latency from intended send time.
                       Every message scheduled in --duration is sent, so when
                       the server falls behind the run outlasts --duration
                       (by up to the backlog, each echo waited on up to
                       --timeout)
  --warmup D           checked, uncounted load first (default 1s)
  --connect-rate R     new connections per second (default unlimited)
  --timeout D          longest wait for a dial, write or echo (default 5s)
  --server-pid PID     report the server's CPU µs per message from /proc
  --seed N             vary the payload bytes between runs (default 0: fixed)
  --json               one JSON object with every figure and the config
  --hgrm FILE          write the latency percentile distribution (.hgrm, µs)
  --quiet              no live progress line (it is shown only on a terminal)
  --version            print the version and exit
Exit status: 0 all intact, 1 errors seen or the run was interrupted,
2 bad command line (checked before any load: an --hgrm file that cannot be
created, a --server-pid with no process).
`)
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
