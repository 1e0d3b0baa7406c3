package integration_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMUnderLoadLosesNoEcho is a hostile-client finding: 20 clients
// writing as fast as they can while reading at full speed, then SIGTERM.
// echod said "stopped" and exited 0 while 10-33 MB it had written never
// reached the clients: each read a byte-exact prefix, then a reset,
// because the drain closed sockets whose peers were still sending (unread
// input makes close send a reset, and the kernel drops the echo not yet
// delivered). Now every client must read a byte-exact echo of a prefix of
// its stream and then EOF, never a reset, when echod exits 0; exit 1 is
// the honest alternative (a drain cut short).
func TestSIGTERMUnderLoadLosesNoEcho(t *testing.T) {
	const clients = 20
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			d := startBackend(t, backend, "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
				"--shutdown-timeout", "20s")
			var wg sync.WaitGroup
			var resets, mismatches atomic.Int64
			var echoed atomic.Int64
			for id := range clients {
				c := dial(t, d.addr())
				c.SetDeadline(time.Now().Add(60 * time.Second))
				stream := randomBytes(uint64(100+id), 1<<20) // sent over and over: byte i is stream[i%len]
				stop := make(chan struct{})
				wg.Add(2)
				go func() { // writer: as fast as echod takes it
					defer wg.Done()
					for o := 0; ; o = (o + 64<<10) % len(stream) {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := c.Write(stream[o : o+64<<10]); err != nil {
							return
						}
					}
				}()
				go func() { // reader: at full speed, checking every byte
					defer wg.Done()
					defer c.Close()
					want := randomBytes(uint64(100+id), 1<<20)
					buf := make([]byte, 64<<10)
					off := 0
					for {
						n, err := c.Read(buf)
						for i := 0; i < n; {
							k := min(n-i, len(want)-(off+i)%len(want))
							start := (off + i) % len(want)
							if !bytes.Equal(buf[i:i+k], want[start:start+k]) {
								mismatches.Add(1)
								break
							}
							i += k
						}
						off += n
						if err != nil {
							if !errors.Is(err, io.EOF) {
								resets.Add(1)
							}
							close(stop)
							c.(*net.TCPConn).CloseWrite()
							echoed.Add(int64(off))
							return
						}
					}
				}()
			}
			d.waitMetric("echod_sent_bytes_total", func(v float64) bool { return v > 20<<20 }, "20 MB echoed")
			d.signal(syscall.SIGTERM)
			code := d.wait(40 * time.Second)
			wg.Wait()
			t.Logf("exit %d: %d bytes echoed to %d clients, %d resets, %d mismatches", code, echoed.Load(), clients, resets.Load(), mismatches.Load())
			if mismatches.Load() != 0 {
				t.Fatalf("%d clients read bytes that were not their echo", mismatches.Load())
			}
			if code == 0 && resets.Load() != 0 {
				t.Fatalf("echod exited 0 but %d of %d clients were reset: echo lost", resets.Load(), clients)
			}
			if code != 0 && code != 1 {
				t.Fatalf("exit status %d, want 0 (drained) or 1 (drain cut short)", code)
			}
		})
	}
}
