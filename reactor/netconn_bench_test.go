package reactor_test

import (
	"io"
	"net"
	"testing"
)

// BenchmarkNetConnPingPong: 64-byte ping-pong over loopback TCP between two
// goroutines, each side blocking in Read, with NetConns on the reactor
// (NetListen + DialContext, so both ends park with Poll) against net's
// conns on the runtime netpoller. It is the wake cycle net/http pays per
// request on NetListen.
func BenchmarkNetConnPingPong(b *testing.B) {
	for _, kind := range benchBackends {
		b.Run(kind, func(b *testing.B) {
			var c, s net.Conn
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
				ln := netListen(b, r, "tcp")
				var err error
				if c, s, err = netPair(r, ln); err != nil {
					b.Fatal(err)
				}
			}
			defer c.Close()
			defer s.Close()
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
