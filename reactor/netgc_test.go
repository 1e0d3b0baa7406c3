package reactor_test

import (
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/reactor"
)

// TestDroppedNetConnCloses: a NetConn dropped without Close, after its
// Reads parked on the reactor (through the ring where the loop has it),
// is closed once the garbage collector finds it unreachable, as net's
// conns are: its peer reads EOF and its listener counts it closed. A
// NetListener dropped so stops listening. Each fails if anything in the
// reactor keeps a NetConn's descriptor reachable after its operations
// ended.
func TestDroppedNetConnCloses(t *testing.T) {
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			r := newReactor(t, b, 2)
			ln := tcpNetListener(t, r)
			var client net.Conn
			func() {
				var s *reactor.NetConn
				client, s = acceptNet(t, ln)
				// Two round trips: the second Read parks before the
				// bytes come.
				for i := range 2 {
					go func() {
						time.Sleep(time.Duration(i) * 10 * time.Millisecond)
						client.Write([]byte("ping"))
					}()
					buf := make([]byte, 4)
					if _, err := io.ReadFull(s, buf); err != nil {
						t.Error(err)
						return
					}
					if _, err := s.Write(buf); err != nil {
						t.Error(err)
						return
					}
					if _, err := io.ReadFull(client, buf); err != nil {
						t.Error(err)
						return
					}
				}
			}() // s is dropped here, unclosed
			eof := make(chan error, 1)
			go func() {
				_, err := client.Read(make([]byte, 1))
				eof <- err
			}()
			gcUntil(t, "the dropped NetConn's peer reads EOF", func() bool {
				select {
				case err := <-eof:
					if err != io.EOF {
						t.Fatalf("peer of the dropped NetConn: %v, want EOF", err)
					}
					return true
				default:
					return false
				}
			})
			gcUntil(t, "the listener counts it closed", func() bool {
				st := ln.Stats()
				return st.Active == 0 && st.Closed == 1
			})

			// A dropped listener stops listening.
			addr := func() string {
				l2, err := r.NetListen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				return l2.Addr().String()
			}()
			gcUntil(t, "the dropped listener refuses dials", func() bool {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					c.Close()
					return false
				}
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("dial of a dropped listener: %v, want refused", err)
				}
				return true
			})
		})
	}
}

// gcUntil collects garbage until cond holds, failing after 10s.
func gcUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("10s of garbage collections and still not: %s", what)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}
