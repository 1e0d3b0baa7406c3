// Command nbio is an echo server on github.com/lesismal/nbio: epoll pollers
// read into a shared buffer and call OnData on the poller goroutine, which
// writes straight back (nbio copies into its own write buffer only when the
// socket would block).
package main

import (
	"context"
	"net"

	"github.com/lesismal/nbio"
	"github.com/oneshot-io/oneshot/bench/peers/internal/peer"
)

func main() { peer.Main("nbio", serve) }

func serve(ctx context.Context, o peer.Options) error {
	// nbio does not say where it listens; with port 0 the startup line
	// must, so the listener is made here and its address kept. Start calls
	// Listen before it returns.
	var bound string
	e := nbio.NewEngine(nbio.Config{
		Network: o.Network,
		Addrs:   []string{o.Address},
		NPoller: o.Loops, // 0: nbio's default, runtime.NumCPU()
		Listen: func(network, addr string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			if err == nil {
				bound = ln.Addr().String()
			}
			return ln, err
		},
	})
	e.OnData(func(c *nbio.Conn, data []byte) {
		if _, err := c.Write(data); err != nil {
			c.Close()
		}
	})
	if err := e.Start(); err != nil {
		return err
	}
	peer.Announce("nbio", o, bound)
	<-ctx.Done()
	e.Stop()
	return nil
}
