package reactor_test

import (
	"io"
	"net"
	"testing"
)

// BenchmarkNetConnPingPong: 64-byte ping-pong over loopback TCP between two
// goroutines, each side blocking in Read, with NetConns on the reactor
// (NetListen + DialContext: both ends park on the reactor, through the
// ring on io_uring) against net's conns on the runtime netpoller. It is
// the wake cycle net/http pays per request on NetListen.
func BenchmarkNetConnPingPong(b *testing.B) {
	for _, kind := range benchBackends {
		b.Run(kind, func(b *testing.B) {
			c, s := benchConnPair(b, kind)
			echoed := make(chan error, 1)
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(s, buf); err != nil {
						echoed <- nil // c closed: the end
						return
					}
					if _, err := s.Write(buf); err != nil {
						echoed <- err
						return
					}
				}
			}()
			msg, buf := make([]byte, 64), make([]byte, 64)
			b.ReportAllocs()
			b.SetBytes(64)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			c.Close()
			if err := <-echoed; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkNetConnStream: one goroutine writes 256 KiB at a time over
// loopback TCP, another reads it with a 32 KiB buffer (io.Copy's), on
// NetConns against net's conns: the bulk case, where a reader finds bytes
// queued more often than it waits for them.
func BenchmarkNetConnStream(b *testing.B) {
	for _, kind := range benchBackends {
		b.Run(kind, func(b *testing.B) {
			c, s := benchConnPair(b, kind)
			const chunk = 256 << 10
			wrote := make(chan error, 1)
			go func() {
				msg := make([]byte, chunk)
				for i := 0; i < b.N; i++ {
					if _, err := c.Write(msg); err != nil {
						wrote <- err
						return
					}
				}
				wrote <- nil
			}()
			buf := make([]byte, 32<<10)
			b.ReportAllocs()
			b.SetBytes(chunk)
			b.ResetTimer()
			for left := b.N * chunk; left > 0; {
				n, err := s.Read(buf[:min(len(buf), left)])
				if err != nil {
					b.Fatal(err)
				}
				left -= n
			}
			b.StopTimer()
			if err := <-wrote; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// benchConnPair returns the two ends of a loopback TCP connection: net's
// conns on the runtime netpoller for kind "netpoller", else NetConns on a
// one-loop reactor of that backend. Both are closed at cleanup.
func benchConnPair(b *testing.B, kind string) (c, s net.Conn) {
	b.Helper()
	if kind == "netpoller" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		acc := make(chan net.Conn, 1)
		go func() {
			s, _ := ln.Accept()
			acc <- s
		}()
		if c, err = net.Dial("tcp", ln.Addr().String()); err != nil {
			b.Fatal(err)
		}
		if s = <-acc; s == nil {
			b.Fatal("Accept failed")
		}
	} else {
		r := benchReactorLoops(b, kind, 1)
		var err error
		if c, s, err = netPair(r, netListen(b, r, "tcp")); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}
