//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/oneshot-io/oneshot/internal/version"
)

// server is what run needs from the serving side: server.go implements it
// on the reactor; the tests implement it without one.
type server interface {
	// addrs returns every bound address in --listen syntax, in flag order.
	addrs() []string
	// backend returns the backend in use and why it was chosen.
	backend() (name, reason string)
	// io says how connections read and write (reactor.IOPath).
	io() string
	// loops returns the number of event loops serving.
	loops() int
	// stats returns what /metrics reads at scrape time.
	stats() statsSource
	// shutdown stops accepting and lets every connection finish echoing
	// what it already received, then closes it. When ctx ends first it
	// force-closes the rest and returns an error wrapping ctx.Err().
	shutdown(ctx context.Context) error
	// close releases everything (the reactor, socket files). Called once,
	// after shutdown returned or was abandoned.
	close() error
}

// startFunc starts serving cfg; on error nothing is left open.
type startFunc func(cfg config, log *zap.Logger) (server, error)

// forceExitWait bounds how long a second signal waits for the force-close
// it triggers before run returns anyway: "at once" for a person at a
// terminal, yet enough for sockets to be closed rather than abandoned.
const forceExitWait = 500 * time.Millisecond

// run is echod without the process around it: it parses args, serves until
// the first value on signals, shuts down gracefully, and returns the exit
// status. main passes os.Args[1:], os.Stdout, os.Stderr and SIGTERM/SIGINT.
// --help and --version, which a person asked for, go to stdout so that
// `echod --help | less` and `echod --version | cut ...` work; everything
// else (usage errors, logs) goes to stderr.
func run(args []string, stdout, stderr io.Writer, signals <-chan os.Signal) int {
	return runWith(args, stdout, stderr, signals, startReactor)
}

func runWith(args []string, stdout, stderr io.Writer, signals <-chan os.Signal, start startFunc) int {
	cfg, err := parseFlags(args)
	if err != nil {
		msg, _ := strings.CutPrefix(err.Error(), errUsage.Error()+": ")
		fmt.Fprintf(stderr, "echod: %s (see echod --help)\n", msg)
		return exitUsage
	}
	switch {
	case cfg.help:
		printUsage(stdout)
		return exitOK
	case cfg.version:
		fmt.Fprintln(stdout, version.String("echod"))
		return exitOK
	case cfg.probe.network != "":
		return runProbe(cfg, stdout, stderr)
	}
	if cfg.logFormat == "" {
		cfg.logFormat = "json"
		if isTerminal(stderr) {
			cfg.logFormat = "console"
		}
	}
	sink := &logSink{w: stderr}
	log, err := newLogger(sink, cfg.logFormat, cfg.logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "echod: %v\n", err)
		return exitUsage
	}
	defer log.Sync() //nolint:errcheck // stderr may be a terminal, which cannot fsync

	srv, err := start(cfg, log)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return exitFailure
	}
	closeServer := func() {
		if err := srv.close(); err != nil {
			log.Warn("close", zap.Error(err))
		}
	}
	var metrics *metricsServer
	if cfg.metricsAddr != "" {
		src := srv.stats()
		src.logDropped = sink.dropped.Load
		if metrics, err = startMetrics(cfg.metricsAddr, cfg.pprof, src, log); err != nil {
			closeServer()
			log.Error("cannot start", zap.Error(err))
			return exitFailure
		}
		defer func() {
			if err := metrics.close(); err != nil {
				log.Warn("metrics server close", zap.Error(err))
			}
		}()
	}

	backend, reason := srv.backend()
	fields := []zap.Field{
		zap.Strings("addr", srv.addrs()),
		zap.String("backend", backend),
		zap.String("backend_reason", reason),
		zap.String("io", srv.io()),
		zap.Int("loops", srv.loops()),
		zap.Bool("lock_loops", cfg.lockLoops),
		zap.Bool("kernel_wait", cfg.kernelWait),
	}
	if metrics != nil {
		fields = append(fields, zap.String("metrics_addr", metrics.addr.String()), zap.Bool("pprof", cfg.pprof))
	}
	fields = append(fields,
		zap.Int("max_conns", cfg.maxConns),
		zap.Int("max_pending", cfg.maxPending),
		zap.Int("udp_rate", cfg.udpRate),
		zap.Duration("idle_timeout", cfg.idleTimeout),
		zap.Int("pid", os.Getpid()),
		zap.String("version", version.String("echod")),
	)
	log.Info("listening", fields...)

	sig := <-signals
	// /healthz turns 503 before the line says so: whoever acts on the
	// line (a supervisor, a test) finds the daemon draining.
	if metrics != nil {
		metrics.draining.Store(true)
	}
	log.Info("shutting down", zap.Stringer("signal", sig), zap.Duration("timeout", cfg.shutdownTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.shutdown(ctx) }()
	select {
	case err = <-done:
	case sig2 := <-signals:
		log.Warn("second signal: closing every connection now", zap.Stringer("signal", sig2))
		cancel()
		select {
		case <-done:
			closeServer()
		case <-time.After(forceExitWait):
			// The process exits right after this; the kernel closes what
			// the reactor did not get to.
		}
		return signalStatus(sig2)
	}
	closeServer()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			log.Warn("shutdown timed out: connections still echoing were closed", zap.Duration("timeout", cfg.shutdownTimeout), zap.Error(err))
		} else {
			log.Error("shutdown", zap.Error(err))
		}
		return exitFailure
	}
	log.Info("stopped")
	return exitOK
}

// signalStatus is the status a shell reports for a process killed by sig:
// 128 + its number.
func signalStatus(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return exitFailure
}
