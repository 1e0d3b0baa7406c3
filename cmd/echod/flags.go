//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// errUsage marks a command line that is wrong: run prints its message on one
// line and exits with exitUsage.
var errUsage = errors.New("usage")

// Exit statuses. Shells and service managers read them; keep them stable.
const (
	exitOK      = 0 // served and shut down cleanly, or --help / --version
	exitFailure = 1 // could not start (address taken, backend unavailable) or shutdown lost data
	exitUsage   = 2 // bad command line, as flag(3)-style tools do
)

// defaultListen is where echod listens when no --listen is given: loopback
// only, so that running it never exposes a port by surprise. Port 7007 is
// the echo port (7) moved out of the privileged range.
const defaultListen = "127.0.0.1:7007"

// config is the parsed, validated command line.
type config struct {
	listen          []listenAddr
	backend         string // "auto", "uring" or "epoll"
	io              string // "auto" or "poll"
	recvBuffers     int    // per loop; 0 = the reactor's default
	recvBufferSize  int    // bytes; 0 = the reactor's default
	recvIncremental bool   // reactor.Config.RecvIncremental
	loops           int    // 0 = one per CPU (GOMAXPROCS)
	lockLoops       bool   // reactor.Config.LockLoops
	kernelWait      bool   // reactor.Config.KernelWait
	maxConns        int    // 0 = unlimited
	idleTimeout     time.Duration
	maxPending      int // bytes
	udpRate         int // datagrams echoed per second to one source host; 0 = no limit
	logLevel        string
	logFormat       string // "json", "console", or "" for console on a terminal, else json
	metricsAddr     string // "" = no metrics server
	pprof           bool   // Go's profiles under /debug/pprof/ on metricsAddr
	shutdownTimeout time.Duration
	probe           listenAddr // --probe: the server to probe; network "" = serve instead
	probeTimeout    time.Duration
	version         bool
	help            bool
}

// listenAddr is one --listen value, split into the network a socket call
// wants and the address. String gives it back in --listen syntax.
type listenAddr struct {
	network string // tcp, tcp4, tcp6, unix, udp, udp4, udp6, or fd (inherited)
	address string // host:port, a filesystem path for unix, a descriptor number for fd
}

func (a listenAddr) String() string { return formatAddr(a.network, a.address) }

// formatAddr writes an address the way --listen accepts it: TCP bare,
// everything else with its network as a prefix. The startup log line uses
// it so that a script can feed a bound address straight back to a client.
func formatAddr(network, address string) string {
	if network == "tcp" {
		return address
	}
	return network + ":" + address
}

// isPacket reports whether the address is a datagram (UDP) one.
func (a listenAddr) isPacket() bool { return strings.HasPrefix(a.network, "udp") }

// parseListenAddr parses a --listen value: HOST:PORT (TCP), or one of the
// prefixes tcp:, tcp4:, tcp6:, udp:, udp4:, udp6: before HOST:PORT, or
// unix:PATH, or fd:N (a listening socket echod inherited on descriptor N).
func parseListenAddr(s string) (listenAddr, error) {
	network, rest := "tcp", s
	if i := strings.IndexByte(s, ':'); i > 0 {
		switch p := s[:i]; p {
		case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix", "fd":
			network, rest = p, s[i+1:]
		}
	}
	if network == "fd" {
		n, err := strconv.Atoi(rest)
		if err != nil || n < 3 {
			return listenAddr{}, fmt.Errorf("%q: fd: needs an inherited descriptor number from 3 up (systemd passes its sockets from 3), e.g. fd:3", s)
		}
		return listenAddr{network: network, address: strconv.Itoa(n)}, nil
	}
	if network == "unix" {
		if rest == "" {
			return listenAddr{}, fmt.Errorf("%q: unix: needs a socket path, e.g. unix:/run/echod.sock", s)
		}
		// Said here, or bind says only "invalid argument".
		limit, what := maxUnixPath, "a Unix socket path"
		if isAbstract(rest) {
			limit, what = maxUnixPath+1, "an abstract socket name (the @ included)"
		}
		if len(rest) > limit {
			return listenAddr{}, fmt.Errorf("%q: %s is %d bytes; Linux allows at most %d", s, what, len(rest), limit)
		}
		return listenAddr{network: network, address: rest}, nil
	}
	host, port, err := splitHostPort(rest)
	if err != nil {
		return listenAddr{}, fmt.Errorf("%q: %w", s, err)
	}
	return listenAddr{network: network, address: net.JoinHostPort(host, port)}, nil
}

// maxUnixPath is the longest Unix socket path bind takes: sun_path holds
// 108 bytes, a path's terminating NUL among them. An abstract name has no
// NUL, so its @ (a NUL to the kernel) and 107 more bytes fit.
const maxUnixPath = 107

// errNotHostPort is splitHostPort's error for an address without a port.
var errNotHostPort = errors.New("want HOST:PORT, unix:PATH or udp:HOST:PORT")

// splitHostPort splits HOST:PORT and returns the port in canonical form
// (007 → 7), so that duplicates are caught and an address reads back the
// way the startup line prints it. A port must be a number from 0 to 65535:
// service names are refused, as is anything that would fail only at bind
// time with exit status 1 instead of a usage error.
func splitHostPort(s string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(s)
	if err != nil {
		return "", "", errNotHostPort
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", "", fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return host, strconv.FormatUint(n, 10), nil
}

// loopsPerCPU bounds --loops: more loops than this per CPU only cost
// memory (a read buffer and a ring or epoll set each, allocated up front),
// and --loops 1000000 ran echod out of memory.
const loopsPerCPU = 16

// maxLoops is the largest --loops: loopsPerCPU for each CPU echod may run
// on.
func maxLoops() int { return loopsPerCPU * runtime.NumCPU() }

// listenFlag collects repeated --listen values.
type listenFlag struct{ addrs *[]listenAddr }

func (f listenFlag) String() string {
	if f.addrs == nil || len(*f.addrs) == 0 {
		return ""
	}
	s := make([]string, len(*f.addrs))
	for i, a := range *f.addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func (f listenFlag) Set(v string) error {
	a, err := parseListenAddr(v)
	if err != nil {
		return err
	}
	*f.addrs = append(*f.addrs, a)
	return nil
}

// choiceFlag is a string flag restricted to a few values.
type choiceFlag struct {
	v       *string
	choices []string
}

func (f choiceFlag) String() string {
	if f.v == nil {
		return ""
	}
	return *f.v
}

func (f choiceFlag) Set(v string) error {
	for _, c := range f.choices {
		if v == c {
			*f.v = v
			return nil
		}
	}
	return fmt.Errorf("%q: want %s", v, orList(f.choices))
}

func orList(s []string) string {
	switch len(s) {
	case 1:
		return s[0]
	case 2:
		return s[0] + " or " + s[1]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// sizeFlag is a byte count that accepts binary suffixes: 65536, 64KiB, 1MiB.
type sizeFlag struct{ v *int }

func (f sizeFlag) String() string {
	if f.v == nil {
		return ""
	}
	return formatSize(*f.v)
}

func (f sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*f.v = n
	return nil
}

var sizeUnits = []struct {
	suffix string
	shift  uint
}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"G", 30}, {"M", 20}, {"K", 10}, {"B", 0}}

// parseSize parses a non-negative byte count with an optional binary suffix
// (KiB, MiB, GiB; K, M, G mean the same).
func parseSize(s string) (int, error) {
	num, shift := s, uint(0)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			num, shift = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.shift
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 63)
	if err != nil || n > math.MaxInt>>shift {
		return 0, fmt.Errorf("%q: want a byte count such as 65536, 64KiB or 1MiB", s)
	}
	return int(n << shift), nil
}

// formatSize is parseSize's inverse for the --help defaults.
func formatSize(n int) string {
	for _, u := range sizeUnits[:3] {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.Itoa(n>>u.shift) + u.suffix
		}
	}
	return strconv.Itoa(n)
}

// nonNegInt is an int flag that refuses negative values.
type nonNegInt struct{ v *int }

func (f nonNegInt) String() string {
	if f.v == nil {
		return ""
	}
	return strconv.Itoa(*f.v)
}

func (f nonNegInt) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return fmt.Errorf("%q: want a whole number, 0 or more", v)
	}
	*f.v = n
	return nil
}

// durationFlag is a non-negative duration.
type durationFlag struct{ v *time.Duration }

func (f durationFlag) String() string {
	if f.v == nil {
		return ""
	}
	return f.v.String()
}

func (f durationFlag) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("%q: want a duration such as 30s, 5m or 0", v)
	}
	*f.v = d
	return nil
}

const usageHead = `Usage: echod [flags]

echod is an RFC 862 echo server: it sends back every byte it receives, over
TCP, Unix stream sockets and UDP. It runs in the foreground, logs to stderr
and stops gracefully on SIGTERM, SIGINT or SIGHUP (a second signal stops it
at once).

Flags:
`

const usageTail = `
Listen addresses:
  HOST:PORT         TCP (also tcp4:HOST:PORT, tcp6:HOST:PORT); port 0 picks a
                    free port, and the startup log line says which
  unix:PATH         a Unix stream socket, removed on shutdown if it is still
                    the one echod created; a stale one that nobody listens
                    on is replaced at startup
  unix:@NAME        a Linux abstract socket: no file
  fd:N              a listening TCP or Unix socket echod inherited on
                    descriptor N (systemd socket activation passes fd 3:
                    contrib/echod-activated.socket)
  udp:HOST:PORT     UDP: each datagram is sent back to its sender, except
                    one from echod's own sockets, from a port below 1024
                    (or 0), or beyond --udp-rate: those would feed echo
                    loops or reflect floods at a spoofed source

Exit status: 0 after a clean shutdown, 1 when echod cannot start (address in
use, io_uring unavailable with --backend uring) or shutdown had to drop
connections, 2 for a bad command line. With --probe: 0 when the server
echoed, 1 when it did not.

Examples:
  echod
  echod --listen 0.0.0.0:7007 --listen udp:0.0.0.0:7007 \
        --metrics-addr 127.0.0.1:9107
  echod --listen unix:/run/echod/echod.sock --backend epoll
  echod --probe 127.0.0.1:7007
`

// newFlagSet declares every flag on cfg, which holds the defaults.
func newFlagSet(cfg *config) *flag.FlagSet {
	fs := flag.NewFlagSet("echod", flag.ContinueOnError)
	fs.Var(listenFlag{&cfg.listen}, "listen",
		"`address` to serve; repeat the flag to serve several\n(default "+defaultListen+")")
	fs.Var(choiceFlag{&cfg.backend, []string{"auto", "uring", "epoll"}}, "backend",
		"readiness `backend`: auto (io_uring where the kernel and seccomp allow\n"+
			"it, else epoll), uring (fail if io_uring is unavailable) or epoll")
	fs.Var(choiceFlag{&cfg.io, []string{"auto", "poll"}}, "io",
		"how connections move bytes on io_uring: `auto` (through the ring where\n"+
			"the kernel can, Linux 6.0) or poll (read(2) and write(2) after\n"+
			"readiness polls); epoll always polls")
	fs.Var(nonNegInt{&cfg.recvBuffers}, "recv-buffers",
		"`n` receive buffers each loop lends the kernel with --io auto on\n"+
			"io_uring, a power of two up to 32768 (0 = 256); a receive that\n"+
			"finds none lent back is armed again, then read after a poll")
	fs.Var(sizeFlag{&cfg.recvBufferSize}, "recv-buffer-size",
		"`bytes` per receive buffer, at least 512 (0 = 16KiB); a receive takes\n"+
			"a whole one")
	fs.BoolVar(&cfg.recvIncremental, "recv-incremental", false,
		"a receive takes only the bytes it brings from a buffer (Linux 6.12),\n"+
			"so bursts of small messages do not run the buffers out; messages\n"+
			"that cross a buffer's end then arrive in two pieces (about 10%\n"+
			"more CPU at 16KiB messages)")
	fs.Var(nonNegInt{&cfg.loops}, "loops",
		"`n` event loops; 0 means one per CPU (at most "+strconv.Itoa(loopsPerCPU)+" per CPU)")
	fs.BoolVar(&cfg.kernelWait, "kernel-wait", cfg.kernelWait,
		"each event loop waits in the kernel on an OS thread of its own and\n"+
			"keeps its CPU while busy (1 connection: 0.85-0.88x the CPU a message\n"+
			"of a loop parked in Go's netpoller); =false parks it")
	fs.BoolVar(&cfg.lockLoops, "lock-loops", false,
		"lock each event loop to an OS thread of its own: cheaper for several\n"+
			"busy loops on io_uring (2 loops at 1,000 connections: 0.77x the CPU a\n"+
			"message), dearer for lightly loaded ones (2 loops, 1 connection: 2x);\n"+
			"loops that wait in the kernel (--kernel-wait) are locked anyway")
	fs.Var(nonNegInt{&cfg.maxConns}, "max-conns",
		"`n` open stream connections at most; beyond it new ones are closed\n"+
			"at once and counted as refused (0 = no limit)")
	fs.Var(durationFlag{&cfg.idleTimeout}, "idle-timeout",
		"close a connection after this `duration` without a byte in either\n"+
			"direction, or up to 1/64 of it later (0 = never)")
	fs.Var(sizeFlag{&cfg.maxPending}, "max-pending",
		"`bytes` of unsent echo a connection may hold before echod stops\n"+
			"reading from it: a peer that sends but never reads costs no more")
	fs.Var(nonNegInt{&cfg.udpRate}, "udp-rate",
		"`n` UDP datagrams a second at most echoed to one source host (an\n"+
			"IPv4 address or an IPv6 /64), in bursts of up to n; the rest are\n"+
			"dropped and counted (0 = no limit)")
	fs.Var(choiceFlag{&cfg.logLevel, []string{"debug", "info", "warn", "error"}}, "log-level",
		"least severe `level` logged: debug, info, warn or error\n"+
			"(connection errors are logged at debug)")
	fs.Var(choiceFlag{&cfg.logFormat, []string{"json", "console"}}, "log-format",
		"log `format`: json or console (default: console on a terminal,\njson otherwise)")
	fs.StringVar(&cfg.metricsAddr, "metrics-addr", cfg.metricsAddr,
		"serve Prometheus /metrics and /healthz over HTTP on this `address`\n(empty = off)")
	fs.BoolVar(&cfg.pprof, "pprof", false,
		"also serve Go's profiles (CPU, heap, goroutines, ...) under\n"+
			"/debug/pprof/ on --metrics-addr, for go tool pprof")
	fs.Var(durationFlag{&cfg.shutdownTimeout}, "shutdown-timeout",
		"on SIGTERM, SIGINT or SIGHUP, the `duration` connections get to\n"+
			"finish echoing before they are closed (at most 24h)")
	fs.Var(probeFlag{&cfg.probe}, "probe",
		"serve nothing: send a few bytes to the echo server at `address`\n"+
			"(HOST:PORT, unix:PATH, udp:HOST:PORT) and exit 0 if they come back\n"+
			"within --probe-timeout, else 1; a container's HEALTHCHECK")
	fs.Var(durationFlag{&cfg.probeTimeout}, "probe-timeout",
		"the `duration` a --probe may take, from dial to the last byte back")
	fs.BoolVar(&cfg.version, "version", false, "print the version and exit")
	fs.BoolVar(&cfg.help, "help", false, "print this help and exit")
	fs.BoolVar(&cfg.help, "h", false, "print this help and exit")
	return fs
}

// defaultConfig holds the defaults --help shows.
func defaultConfig() config {
	return config{
		backend:         "auto",
		io:              "auto",
		maxConns:        10000,
		idleTimeout:     5 * time.Minute,
		maxPending:      1 << 20,
		udpRate:         1000,
		logLevel:        "info",
		shutdownTimeout: 10 * time.Second,
		probeTimeout:    defaultProbeTimeout,
		kernelWait:      true,
	}
}

// maxShutdownTimeout bounds --shutdown-timeout; minRecvBufferSize bounds
// a --recv-buffer-size other than 0 from below.
const (
	maxShutdownTimeout = 24 * time.Hour
	minRecvBufferSize  = 512
)

// parseFlags parses args. A wrong command line returns an error wrapping
// errUsage whose text fits on one line.
func parseFlags(args []string) (config, error) {
	cfg := defaultConfig()
	fs := newFlagSet(&cfg)
	fs.SetOutput(io.Discard) // run reports the one-line error itself
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) { // -help spelled in a way fs only knows through ErrHelp
			cfg.help = true
			return cfg, nil
		}
		return cfg, fmt.Errorf("%w: %s", errUsage, flagError(err))
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%w: unexpected argument %q (addresses go in --listen)", errUsage, fs.Arg(0))
	}
	if err := probeAlone(fs, cfg); err != nil {
		return cfg, fmt.Errorf("%w: %w", errUsage, err)
	}
	if len(cfg.listen) == 0 {
		a, err := parseListenAddr(defaultListen)
		if err != nil {
			panic("echod: default listen address does not parse: " + err.Error())
		}
		cfg.listen = []listenAddr{a}
	}
	if cfg.shutdownTimeout == 0 {
		return cfg, fmt.Errorf("%w: --shutdown-timeout must be more than 0", errUsage)
	}
	// Twice it bounds each flush (listenConfig), which must outlast it; a
	// day is past any supervisor's stop timeout.
	if cfg.shutdownTimeout > maxShutdownTimeout {
		return cfg, fmt.Errorf("%w: --shutdown-timeout %v: at most %v", errUsage, cfg.shutdownTimeout, maxShutdownTimeout)
	}
	// Unlike --max-conns 0 and --idle-timeout 0, 0 cannot mean "no limit":
	// output that grows without bound on a peer that never reads is the
	// out-of-memory bug this flag exists to prevent. (The reactor would
	// quietly read 0 as its 1 MiB default, while the startup line said 0.)
	if cfg.maxPending == 0 {
		return cfg, fmt.Errorf("%w: --max-pending must be more than 0: echod always bounds what a connection may hold", errUsage)
	}
	if cfg.pprof && cfg.metricsAddr == "" {
		return cfg, fmt.Errorf("%w: --pprof needs --metrics-addr: the profiles are served there", errUsage)
	}
	if cfg.metricsAddr != "" {
		if _, _, err := splitHostPort(cfg.metricsAddr); err != nil {
			if errors.Is(err, errNotHostPort) {
				err = errors.New("want HOST:PORT")
			}
			return cfg, fmt.Errorf("%w: --metrics-addr %q: %w", errUsage, cfg.metricsAddr, err)
		}
	}
	if n := cfg.recvBuffers; n > 1<<15 || n&(n-1) != 0 {
		return cfg, fmt.Errorf("%w: --recv-buffers %d: want a power of two up to 32768", errUsage, n)
	}
	if cfg.recvBufferSize > 1<<30 {
		return cfg, fmt.Errorf("%w: --recv-buffer-size %d: at most 1GiB", errUsage, cfg.recvBufferSize)
	}
	// Smaller buffers are a receive a few bytes long: 1 byte once echoed
	// 16 KiB messages at 27 a second.
	if n := cfg.recvBufferSize; n != 0 && n < minRecvBufferSize {
		return cfg, fmt.Errorf("%w: --recv-buffer-size %d: at least %d (or 0, the reactor's default)", errUsage, n, minRecvBufferSize)
	}
	if most := maxLoops(); cfg.loops > most {
		return cfg, fmt.Errorf("%w: --loops %d: at most %d (%d per CPU, %d CPUs here)", errUsage, cfg.loops, most, loopsPerCPU, runtime.NumCPU())
	}
	seen := make(map[string]bool, len(cfg.listen))
	for _, a := range cfg.listen {
		// Port 0 twice is two different free ports; anything else twice
		// could only fail at bind time with a less helpful message.
		if seen[a.String()] && !strings.HasSuffix(a.address, ":0") {
			return cfg, fmt.Errorf("%w: --listen %s given twice", errUsage, a)
		}
		seen[a.String()] = true
	}
	return cfg, nil
}

// probeAlone refuses a command line that mixes --probe with flags that
// only a server reads: the probe would ignore them, and whoever wrote them
// meant something else. --help or --version beside --probe alone print as
// they would without it.
func probeAlone(fs *flag.FlagSet, cfg config) error {
	var err error
	timeoutSet := false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "probe", "help", "h", "version":
		case "probe-timeout":
			timeoutSet = true
		default:
			if cfg.probe.network != "" && err == nil {
				err = fmt.Errorf("--probe takes no server flags (got --%s): it serves nothing", f.Name)
			}
		}
	})
	switch {
	case err != nil:
		return err
	case timeoutSet && cfg.probe.network == "":
		return errors.New("--probe-timeout needs --probe")
	case cfg.probeTimeout == 0:
		return errors.New("--probe-timeout must be more than 0")
	}
	return nil
}

// probeFlag is --probe: one address as --listen takes it, of a server
// that can be dialed.
type probeFlag struct{ a *listenAddr }

func (f probeFlag) String() string {
	if f.a == nil || f.a.network == "" {
		return ""
	}
	return f.a.String()
}

func (f probeFlag) Set(v string) error {
	a, err := parseListenAddr(v)
	switch {
	case err != nil:
		return err
	case f.a.network != "":
		return fmt.Errorf("%q: given twice; a probe checks one server", v)
	case a.network == "fd":
		return fmt.Errorf("%q: an inherited descriptor cannot be dialed; want HOST:PORT, unix:PATH or udp:HOST:PORT", v)
	case a.network != "unix" && strings.HasSuffix(a.address, ":0"):
		return fmt.Errorf("%q: port 0 cannot be dialed; want the port the server listens on", v)
	}
	*f.a = a
	return nil
}

// flagError rewrites the flag package's messages in --flag spelling, which
// is how --help shows them.
func flagError(err error) string {
	msg := err.Error()
	// invalid value "x" for flag -backend: "x": want ...
	if strings.HasPrefix(msg, "invalid value ") {
		if _, rest, ok := strings.Cut(msg, " for flag -"); ok {
			if name, why, ok := strings.Cut(rest, ": "); ok {
				return "--" + name + " " + why
			}
		}
	}
	// invalid boolean value "x" for -version: parse error
	if v, ok := strings.CutPrefix(msg, "invalid boolean value "); ok {
		if v, name, ok := strings.Cut(v, " for -"); ok {
			name, _, _ = strings.Cut(name, ":")
			return "--" + name + " takes no value, or =true / =false (got " + v + ")"
		}
	}
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "unknown flag --" + strings.TrimLeft(name, "-")
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return "--" + strings.TrimLeft(name, "-") + " needs a value"
	}
	return msg
}

// printUsage writes --help.
func printUsage(w io.Writer) {
	cfg := defaultConfig()
	fs := newFlagSet(&cfg)
	fs.SetOutput(w)
	fmt.Fprint(w, usageHead)
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "h" {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintln(w, line)
		lines := strings.Split(usage, "\n")
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			def := "(default " + f.DefValue + ")"
			if last := lines[len(lines)-1]; len(last)+1+len(def) <= 72 {
				lines[len(lines)-1] = last + " " + def
			} else {
				lines = append(lines, def)
			}
		}
		for _, l := range lines {
			fmt.Fprintln(w, "      "+l)
		}
	})
	fmt.Fprint(w, usageTail)
}
