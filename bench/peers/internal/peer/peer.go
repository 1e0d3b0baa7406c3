// Package peer holds what every peer echo server in this module shares: its
// flags, its startup line and its shutdown on SIGINT/SIGTERM. Each server is
// a separate binary so that one library's init-time goroutines (netpoll starts
// its pollers in init) never run inside another's process while its CPU time
// is being measured.
package peer

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
)

// Options are the flags every peer server takes.
type Options struct {
	// Network is "tcp" or "unix", from the --addr prefix.
	Network string
	// Address is host:port for tcp, a path for unix.
	Address string
	// Loops is the number of event loops (pollers) to ask the library for;
	// 0 leaves the library's default (for the Go runtime, GOMAXPROCS).
	Loops int
}

// ErrUsage reports a bad command line; the message has already been printed.
var ErrUsage = errors.New("usage")

// Parse reads the flags of a peer named name from args (without the program
// name). Bad flags print one line to stderr and return ErrUsage.
func Parse(name string, args []string) (Options, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(discard{})
	addr := fs.String("addr", "127.0.0.1:7000", "listen address: host:port or unix:/path")
	loops := fs.Int("loops", 0, "event loops (0: the library's default)")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return Options{}, ErrUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		return Options{}, ErrUsage
	}
	if *loops < 0 {
		fmt.Fprintf(os.Stderr, "%s: --loops must be >= 0\n", name)
		return Options{}, ErrUsage
	}
	o := Options{Network: "tcp", Address: *addr, Loops: *loops}
	if p, ok := strings.CutPrefix(*addr, "unix:"); ok {
		o.Network, o.Address = "unix", p
	}
	return o, nil
}

// Announce prints the startup line on stderr with the address the kernel
// bound, so that --addr 127.0.0.1:0 works: scripts read the port from it
// (scripts/compare.sh does), then probe it with an echo.
func Announce(name string, o Options, bound string) {
	fmt.Fprintf(os.Stderr, "%s: listening on %s:%s loops=%d gomaxprocs=%d pid=%d\n",
		name, o.Network, bound, o.Loops, runtime.GOMAXPROCS(0), os.Getpid())
}

// Main runs serve until SIGINT or SIGTERM, then calls stop and exits.
// serve must return once ctx is done or stop has been called.
func Main(name string, serve func(ctx context.Context, o Options) error) {
	o, err := Parse(name, os.Args[1:])
	if err != nil {
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := serve(ctx, o); err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
