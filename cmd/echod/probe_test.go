package main

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// answer is what a test server does with the bytes a probe sends.
type answer int

const (
	echoes  answer = iota // sends them back
	splits                // sends them back in two writes, a moment apart
	silent                // reads them and says nothing
	garbles               // sends them back reversed
	shorts                // sends back all but the last, then waits
	longer                // sends them back with a byte more
	closes                // reads them and hangs up
)

// reply returns what a server that answers so sends back for b (nil:
// nothing).
func (a answer) reply(b []byte) []byte {
	switch a {
	case echoes, splits:
		return b
	case garbles:
		r := slices.Clone(b)
		slices.Reverse(r)
		return r
	case shorts:
		return b[:len(b)-1]
	case longer:
		return append(slices.Clone(b), '!')
	}
	return nil
}

// probeServer serves network on loopback, answering every connection or
// datagram as a does, until the test ends. It returns the --probe address.
func probeServer(t *testing.T, network string, a answer) string {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		wg.Go(func() {
			buf := make([]byte, 64)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if r := a.reply(buf[:n]); r != nil {
					pc.WriteTo(r, from)
				}
			}
		})
		return "udp:" + pc.LocalAddr().String()
	}
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "echo.sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				// Read before any hang-up: a close with the probe's
				// bytes unread would be a reset, not an end of stream.
				b := make([]byte, probeSize)
				if _, err := io.ReadFull(c, b); err != nil || a == closes {
					return
				}
				r := a.reply(b)
				if a == splits {
					c.Write(r[:5])
					time.Sleep(20 * time.Millisecond)
					r = r[5:]
				}
				if r != nil {
					c.Write(r)
				}
				io.Copy(io.Discard, c) // until the probe hangs up
			})
		}
	})
	if network == "unix" {
		return "unix:" + addr
	}
	return ln.Addr().String()
}

// closedPort returns a loopback TCP address nobody listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestProbe: --probe exits 0 with a line on stdout only when the bytes it
// sent come back whole and unchanged, within --probe-timeout; every other
// server (down, silent, garbling, cutting the echo short, hanging up) is
// exit status 1 and one line on stderr that says what went wrong. It never
// starts a server.
func TestProbe(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name    string
		addr    func(t *testing.T) string
		healthy bool
		want    string // in the one line
	}{
		{"tcp", func(t *testing.T) string { return probeServer(t, "tcp", echoes) }, true, "echoed 16 bytes in "},
		{"unix", func(t *testing.T) string { return probeServer(t, "unix", echoes) }, true, "echoed 16 bytes in "},
		{"udp", func(t *testing.T) string { return probeServer(t, "udp", echoes) }, true, "echoed 16 bytes in "},
		{"split", func(t *testing.T) string { return probeServer(t, "tcp", splits) }, true, "echoed 16 bytes in "},
		{"refused", closedPort, false, "connection refused"},
		{"no socket file", func(t *testing.T) string { return "unix:" + filepath.Join(t.TempDir(), "none.sock") }, false, "no such file"},
		{"silent", func(t *testing.T) string { return probeServer(t, "tcp", silent) }, false, "no echo within 300ms (0 of 16 bytes back)"},
		{"short", func(t *testing.T) string { return probeServer(t, "tcp", shorts) }, false, "no echo within 300ms (15 of 16 bytes back)"},
		{"garbled", func(t *testing.T) string { return probeServer(t, "tcp", garbles) }, false, errNoEcho.Error()},
		{"hangs up", func(t *testing.T) string { return probeServer(t, "tcp", closes) }, false, "reading the echo: EOF (0 of 16 bytes back)"},
		{"udp silent", func(t *testing.T) string { return probeServer(t, "udp", silent) }, false, "no echo within 300ms"},
		{"udp garbled", func(t *testing.T) string { return probeServer(t, "udp", garbles) }, false, errNoEcho.Error()},
		{"udp longer", func(t *testing.T) string { return probeServer(t, "udp", longer) }, false, errNoEcho.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr(t)
			var stdout, stderr bytes.Buffer
			exited := make(chan int, 1)
			go func() {
				exited <- runWith([]string{"--probe", addr, "--probe-timeout", timeout.String()}, &stdout, &stderr, nil, mustNotStart(t))
			}()
			var code int
			select {
			case code = <-exited:
			case <-time.After(timeout + 5*time.Second):
				t.Fatalf("the probe still runs 5s past its %v", timeout)
			}
			line, quiet, wantCode := stdout.String(), stderr.String(), exitOK
			if !tt.healthy {
				line, quiet, wantCode = quiet, line, exitFailure
			}
			if code != wantCode {
				t.Errorf("exit status %d, want %d; stdout %q, stderr %q", code, wantCode, stdout.String(), stderr.String())
			}
			if quiet != "" {
				t.Errorf("the other stream got %q", quiet)
			}
			prefix := "echod: probe " + addr + ": "
			if strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, prefix) || !strings.Contains(line, tt.want) {
				t.Errorf("got %q, want one line starting %q containing %q", line, prefix, tt.want)
			}
		})
	}
}
