package reactor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/reactor"
)

// pattern is byte i of a client's stream: any lost, reordered or foreign
// byte in the echo shows as a mismatch at its offset.
func pattern(id, i int) byte { return byte(i*7 + id*13 + i>>10) }

// TestShutdownLosesNoEchoUnderLoad is a hostile-client finding against
// echod: clients writing as fast as they can while reading at full speed,
// then a graceful shutdown. The drain flushed each Conn's output to the
// kernel and closed the socket while the peer was still sending; closing
// with unread input sends a reset, and the kernel threw away the echo it
// had not delivered yet (10-33 MB over 20 clients, exit 0). With the
// lingering close every client must read a byte-exact echo of a prefix of
// what it sent, then EOF, never a reset, and Shutdown must report a clean
// drain. (With LingerTimeout -1, the old close, this test saw 1-2 of 8
// clients reset in about half its runs.)
func TestShutdownLosesNoEchoUnderLoad(t *testing.T) {
	const clients = 8
	for _, b := range connBackends {
		for _, linger := range []time.Duration{0} {
			t.Run(fmt.Sprintf("%s/LingerTimeout=%v", name(b), linger), func(t *testing.T) {
				r := newReactor(t, b, 1)
				ln, err := r.Listen("tcp", "127.0.0.1:0", &echo{}, reactor.ListenConfig{LingerTimeout: linger})
				if err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				var resets, mismatches, echoed atomic.Int64
				for id := 0; id < clients; id++ {
					c, err := net.Dial("tcp", ln.Addr().String())
					if err != nil {
						t.Fatal(err)
					}
					c.SetDeadline(time.Now().Add(20 * time.Second))
					stop := make(chan struct{})
					wg.Add(2)
					go func() { // writer: as fast as the server takes it
						defer wg.Done()
						buf := make([]byte, 16<<10)
						for off := 0; ; off += len(buf) {
							for i := range buf {
								buf[i] = pattern(id, off+i)
							}
							select {
							case <-stop:
								return
							default:
							}
							if _, err := c.Write(buf); err != nil {
								return
							}
						}
					}()
					go func() { // reader: at full speed, checking every byte
						defer wg.Done()
						defer c.Close()
						buf := make([]byte, 64<<10)
						off := 0
						for {
							n, err := c.Read(buf)
							for i := 0; i < n; i++ {
								if buf[i] != pattern(id, off+i) {
									mismatches.Add(1)
									break
								}
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
				waitFor(t, 10*time.Second, "traffic on every connection", func() bool {
					return ln.Stats().BytesOut > clients<<18
				})
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				serr := ln.Shutdown(ctx)
				wg.Wait()
				t.Logf("Shutdown: %v; %d bytes echoed, %d resets, %d discarded while lingering",
					serr, echoed.Load(), resets.Load(), ln.Stats().Discarded)
				if mismatches.Load() != 0 {
					t.Fatalf("%d connections read bytes that were not their own echo", mismatches.Load())
				}
				if serr != nil || resets.Load() != 0 {
					t.Fatalf("Shutdown %v, %d of %d clients reset: echo lost", serr, resets.Load(), clients)
				}
			})
		}
	}
}
