package integration_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// randomBytes returns n reproducible pseudo-random bytes for seed.
func randomBytes(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b) // never fails
	return b
}

// halfCloseEcho sends p on c and shuts c's write side, starts reading
// after pause (a slow reader makes the server meet a full socket), reads to
// the EOF the server answers the half-close with, and fails t unless every
// byte came back, in order.
func halfCloseEcho(t *testing.T, c *net.TCPConn, p []byte, pause time.Duration) {
	t.Helper()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(p)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	time.Sleep(pause)
	got, err := io.ReadAll(c) // nil error means EOF: the server closed
	if werr := <-werr; werr != nil {
		t.Fatalf("%d bytes: write/CloseWrite: %v", len(p), werr)
	}
	if err != nil {
		t.Fatalf("%d bytes: read after half-close: %v (after %d bytes)", len(p), err, len(got))
	}
	if !bytes.Equal(got, p) {
		t.Fatalf("%d bytes: got %d bytes back before EOF, not the same", len(p), len(got))
	}
}

// dial connects to a bound address in --listen syntax and closes the
// connection when the test ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	network, address := "tcp", addr
	for _, p := range []string{"unix:", "udp:"} {
		if rest, ok := strings.CutPrefix(addr, p); ok {
			network, address = strings.TrimSuffix(p, ":"), rest
		}
	}
	c, err := net.DialTimeout(network, address, bound)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo sends p over c in writes of 1 to maxChunk bytes while reading the
// echo concurrently, and reports whether exactly p came back (by SHA-256,
// locating the first difference when it did not).
func echo(c net.Conn, p []byte, maxChunk int, seed uint64) error {
	if err := c.SetDeadline(time.Now().Add(bound)); err != nil {
		return err
	}
	werr := make(chan error, 1)
	go func() {
		rnd := rand.New(rand.NewPCG(seed, 1))
		for off := 0; off < len(p); {
			n := min(1+rnd.IntN(maxChunk), len(p)-off)
			if _, err := c.Write(p[off : off+n]); err != nil {
				werr <- fmt.Errorf("write at byte %d: %w", off, err)
				return
			}
			off += n
		}
		werr <- nil
	}()
	got := make([]byte, len(p))
	n, rerr := io.ReadFull(c, got)
	if err := <-werr; err != nil {
		return err
	}
	if rerr != nil {
		return fmt.Errorf("read %d of %d echoed bytes: %w", n, len(p), rerr)
	}
	if sha256.Sum256(got) != sha256.Sum256(p) {
		i := 0
		for got[i] == p[i] {
			i++
		}
		return fmt.Errorf("echo of %d bytes differs from byte %d on", len(p), i)
	}
	return nil
}

// TestEchoLargePayloads sends 32 MiB of random bytes through each backend,
// on one connection and on eight at once, in writes of random sizes, and
// checks the echo byte for byte.
func TestEchoLargePayloads(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			d := startBackend(t, backend, "--listen", "127.0.0.1:0")
			for _, tt := range []struct{ conns, size int }{{1, 16 << 20}, {8, 2 << 20}} {
				t.Run(fmt.Sprintf("%dx%dMiB", tt.conns, tt.size>>20), func(t *testing.T) {
					var wg sync.WaitGroup
					for i := range tt.conns {
						c := dial(t, d.addr())
						seed := uint64(tt.conns*100 + i)
						wg.Go(func() {
							if err := echo(c, randomBytes(seed, tt.size), 256<<10, seed); err != nil {
								t.Errorf("conn %d: %v", i, err)
							}
						})
					}
					wg.Wait()
				})
			}
			d.stop()
		})
	}
}

// TestManySmallWrites sends 20,000 writes of 1 to 64 bytes on one
// connection (Nagle off, so most leave as their own segment): the server
// must stitch the stream back exactly, whatever the batching.
func TestManySmallWrites(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			d := startBackend(t, backend, "--listen", "127.0.0.1:0")
			c := dial(t, d.addr())
			p := randomBytes(7, 20000*32)
			if err := echo(c, p, 64, 7); err != nil {
				t.Fatal(err)
			}
			d.stop()
		})
	}
}

// TestManyConnections holds 2,000 connections open at once (the metrics
// must count all of them active), echoes a distinct message on each, closes
// them, and checks that echod saw every one close.
func TestManyConnections(t *testing.T) {
	const conns = 2000
	needFiles(t, conns)
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			d := startBackend(t, backend, "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--max-conns", "0")
			cs := make([]net.Conn, conns)
			var wg sync.WaitGroup
			sem := make(chan struct{}, 64) // the kernel's SYN queue is finite too
			for i := range cs {
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					c, err := net.DialTimeout("tcp", d.addr(), bound)
					if err != nil {
						t.Errorf("dial %d: %v", i, err)
						return
					}
					cs[i] = c
				})
			}
			wg.Wait()
			defer func() {
				for _, c := range cs {
					if c != nil {
						c.Close()
					}
				}
			}()
			if t.Failed() {
				return
			}
			d.waitMetric("echod_connections_active", func(v float64) bool { return v == conns }, "all connections open at once")
			for i, c := range cs {
				wg.Go(func() {
					msg := fmt.Appendf(nil, "connection %d of %d %s", i, conns, bytes.Repeat([]byte{byte(i)}, 256))
					if err := echo(c, msg, len(msg), uint64(i)); err != nil {
						t.Errorf("conn %d: %v", i, err)
					}
				})
			}
			wg.Wait()
			for _, c := range cs {
				c.Close()
			}
			m := d.waitMetric("echod_connections_active", func(v float64) bool { return v == 0 }, "every connection closed")
			if a, cl := d.stream(m, "echod_connections_accepted_total"), d.stream(m, "echod_connections_closed_total"); a != conns || cl != conns {
				t.Errorf("accepted %v, closed %v; want %d and %d", a, cl, conns, conns)
			}
			d.stop()
		})
	}
}

// TestUnixSocket echoes over a Unix stream socket and checks that echod
// removes the socket file when it stops.
func TestUnixSocket(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "echod.sock")
			d := startBackend(t, backend, "--listen", "unix:"+path)
			if d.addr() != "unix:"+path {
				t.Fatalf("startup line addr %q, want unix:%s", d.addr(), path)
			}
			if err := echo(dial(t, d.addr()), randomBytes(3, 1<<20), 64<<10, 3); err != nil {
				t.Fatal(err)
			}
			d.stop()
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Errorf("socket file %s after shutdown: %v, want it removed", path, err)
			}
		})
	}
}

// TestUnixSocketLeftBehind: a socket file nobody listens on (an echod
// killed by SIGKILL leaves one) is replaced; one that is in use is not,
// and echod refuses to start on it.
func TestUnixSocketLeftBehind(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stale, live := filepath.Join(dir, "stale.sock"), filepath.Join(dir, "live.sock")
	for _, path := range []string{stale, live} {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		if path == live {
			t.Cleanup(func() { ln.Close() })
			continue
		}
		ln.SetUnlinkOnClose(false)
		ln.Close()
	}

	d := startEchod(t, "--listen", "unix:"+stale)
	d.waitLog("removed stale socket")
	if err := echo(dial(t, d.addr()), []byte("replaced"), 8, 1); err != nil {
		t.Fatal(err)
	}
	d.stop()

	d = launch(t, exec.Command(echodPath), "--listen", "unix:"+live)
	if code := d.wait(bound); code != 1 {
		t.Fatalf("exit status %d on a socket in use, want 1", code)
	}
	if line := d.waitLog("cannot start"); !strings.Contains(fmt.Sprint(line["error"]), "address already in use") {
		t.Errorf("error %v: want \"address already in use\"", line["error"])
	}
	if _, err := os.Lstat(live); err != nil {
		t.Errorf("the live socket's file: %v; echod must leave it alone", err)
	}
}

// TestUDP echoes datagrams of several sizes, each as one datagram back to
// its sender, next to a TCP listener on the same daemon.
func TestUDP(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			d := startBackend(t, backend, "--listen", "127.0.0.1:0", "--listen", "udp:127.0.0.1:0")
			if len(d.addrs) != 2 || !strings.HasPrefix(d.addrs[1], "udp:127.0.0.1:") {
				t.Fatalf("startup line addrs %q, want a TCP and a udp: address", d.addrs)
			}
			c := dial(t, d.addrs[1])
			buf := make([]byte, 65536)
			for i, size := range []int{1, 7, 512, 1400, 1472, 8192, 60000} {
				p := randomBytes(uint64(i), size)
				if _, err := c.Write(p); err != nil {
					t.Fatalf("send %d bytes: %v", size, err)
				}
				if err := c.SetReadDeadline(time.Now().Add(bound)); err != nil {
					t.Fatal(err)
				}
				n, err := c.Read(buf)
				if err != nil {
					t.Fatalf("datagram of %d bytes: no echo: %v", size, err)
				}
				if !bytes.Equal(buf[:n], p) {
					t.Fatalf("datagram of %d bytes: echo of %d bytes differs", size, n)
				}
			}
			if err := echo(dial(t, d.addrs[0]), []byte("tcp too"), 7, 1); err != nil {
				t.Fatal(err)
			}
			d.stop()
		})
	}
}
