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
// happen or it was interrupted, 2 for a bad command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/oneshot-io/oneshot/cmd/echoload/internal/load"
	"golang.org/x/sys/unix"
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
	cfg   load.Config
	json  bool
	hgrm  string
	quiet bool
}

// parse turns args into options; the error is one line for the user.
func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("echoload", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", defaultAddr, "server: host:port (TCP), unix:/path, or udp:host:port")
	fs.IntVar(&o.cfg.Conns, "conns", 1, "connections")
	size := fs.String("size", "64", "bytes per message (suffixes k/KiB, m/MiB)")
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) { // -h/--help
			return o, err
		}
		return o, errors.New(flagSpelling.Replace(err.Error()))
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
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
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"k", 1 << 10}, {"m", 1 << 20}} {
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
	if o.hgrm != "" {
		if herr := writeHGRM(o.hgrm, &rep); herr != nil {
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

func writeHGRM(path string, rep *load.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.WriteHGRM(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
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
  --rate R             total msgs/s, open loop; latency from intended send time
  --warmup D           checked, uncounted load first (default 1s)
  --connect-rate R     new connections per second (default unlimited)
  --timeout D          longest wait for a dial, write or echo (default 5s)
  --server-pid PID     report the server's CPU µs per message from /proc
  --seed N             vary the payload bytes between runs (default 0: fixed)
  --json               one JSON object with every figure and the config
  --hgrm FILE          write the latency percentile distribution (.hgrm, µs)
  --quiet              no live progress line (it is shown only on a terminal)
Exit status: 0 all intact, 1 errors seen or the run was interrupted,
2 bad command line.
`)
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
