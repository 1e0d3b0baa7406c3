// Command stdlib is an echo server in the Go standard library's own style:
// one goroutine per connection over net.Conn, the runtime's netpoller
// underneath. It is the baseline a Go user already has.
package main

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"

	"github.com/oneshot-io/oneshot/bench/peers/internal/peer"
)

func main() { peer.Main("stdlib", serve) }

func serve(ctx context.Context, o peer.Options) error {
	if o.Loops > 0 {
		// The runtime has one netpoller; the nearest knob is the number of
		// Ps running goroutines.
		runtime.GOMAXPROCS(o.Loops)
	}
	ln, err := net.Listen(o.Network, o.Address)
	if err != nil {
		return err
	}
	peer.Announce("stdlib", o, ln.Addr().String())
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]struct{}{}
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			// io.CopyBuffer would use splice on Linux for TCP→TCP; a plain
			// read/write loop is what an echo handler in user code does.
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break // EOF or a reset peer: either ends this connection
				}
			}
			c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}
