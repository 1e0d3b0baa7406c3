// Command netpoll is an echo server on github.com/cloudwego/netpoll: epoll
// pollers fill each connection's LinkBuffer, and the OnRequest handler runs
// on netpoll's goroutine pool (its default runner), as Kitex uses it.
package main

import (
	"context"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/oneshot-io/oneshot/bench/peers/internal/peer"
)

func main() { peer.Main("netpoll", serve) }

// handle echoes what is buffered: Next hands out the bytes without copying,
// WriteBinary links them into the output buffer and Flush writes it.
func handle(_ context.Context, c netpoll.Connection) error {
	r, w := c.Reader(), c.Writer()
	defer r.Release()
	n := r.Len()
	if n == 0 {
		return nil
	}
	b, err := r.Next(n)
	if err != nil {
		return err
	}
	if _, err := w.WriteBinary(b); err != nil {
		return err
	}
	return w.Flush()
}

func serve(ctx context.Context, o peer.Options) error {
	if o.Loops > 0 {
		if err := netpoll.Configure(netpoll.Config{PollerNum: o.Loops}); err != nil {
			return err
		}
	}
	ln, err := netpoll.CreateListener(o.Network, o.Address)
	if err != nil {
		return err
	}
	evl, err := netpoll.NewEventLoop(handle)
	if err != nil {
		return err
	}
	peer.Announce("netpoll", o, ln.Addr().String())
	done := make(chan error, 1)
	go func() { done <- evl.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return evl.Shutdown(sctx)
	}
}
