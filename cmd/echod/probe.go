//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// --probe: echod as the client of an echo server, for a container's
// HEALTHCHECK. The distroless image has no shell, nc or curl to probe
// with, and /healthz exists only with --metrics-addr; the one program
// there is echod. A probe proves what a user of the server needs, that it
// echoes, rather than that its process is alive: a server that accepts
// but no longer reads (a wedged loop) fails it, and so does one that is
// draining after SIGTERM, which no longer accepts.

// probeSize is how many random bytes a probe sends: enough that a stale
// or foreign reply cannot match by chance, one small message for the
// server.
const probeSize = 16

// defaultProbeTimeout bounds a whole probe, dial to last byte, where
// --probe-timeout is not given: under Docker's default 30 s health-check
// timeout, far above an echo's round trip on a loaded host.
const defaultProbeTimeout = 2 * time.Second

// errNoEcho reports a probe whose server answered with other bytes than
// it was sent.
var errNoEcho = errors.New("echoed bytes differ from those sent")

// probe sends probeSize random bytes to the echo server at a and reads
// them back, within timeout. It returns how long that took.
func probe(a listenAddr, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, a.network, a.address)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return 0, err
		}
	}
	sent := make([]byte, probeSize)
	rand.Read(sent)
	if _, err := c.Write(sent); err != nil {
		return 0, err
	}
	got := make([]byte, probeSize+1) // a longer datagram is a wrong answer, not a cut one
	var n int
	if a.isPacket() {
		// One datagram back; an echo server that drops it (rate limit,
		// loss) fails the probe, as it would fail its clients.
		n, err = c.Read(got)
	} else {
		n, err = io.ReadFull(c, got[:probeSize])
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, fmt.Errorf("no echo within %v (%d of %d bytes back)", timeout, n, probeSize)
		}
		return 0, fmt.Errorf("reading the echo: %w (%d of %d bytes back)", err, n, probeSize)
	}
	if !bytes.Equal(got[:n], sent) {
		return 0, errNoEcho
	}
	return time.Since(start), nil
}

// runProbe is echod --probe: one probe, a line saying how it went (stdout
// when the server echoed, stderr when not: Docker keeps either in the
// container's health log), and the exit status a HEALTHCHECK reads, 0 for
// healthy and 1 for not.
func runProbe(cfg config, stdout, stderr io.Writer) int {
	took, err := probe(cfg.probe, cfg.probeTimeout)
	if err != nil {
		fmt.Fprintf(stderr, "echod: probe %s: %v\n", cfg.probe, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "echod: probe %s: echoed %d bytes in %v\n", cfg.probe, probeSize, took.Round(time.Microsecond))
	return exitOK
}
