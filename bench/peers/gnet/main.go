// Command gnet is an echo server on github.com/panjf2000/gnet/v2: event loops
// over epoll, each owning its connections, echoing from OnTraffic.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"github.com/oneshot-io/oneshot/bench/peers/internal/peer"
	"github.com/panjf2000/gnet/v2"
)

func main() { peer.Main("gnet", serve) }

type echo struct {
	gnet.BuiltinEventEngine
	o     peer.Options
	proto string
}

func (e *echo) OnBoot(eng gnet.Engine) gnet.Action {
	bound, err := boundAddr(eng)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gnet: %v\n", err)
		return gnet.Shutdown
	}
	peer.Announce("gnet", e.o, bound)
	return gnet.None
}

// boundAddr asks the kernel where gnet's listener is bound: gnet does not
// say, and with port 0 only the kernel knows the port.
func boundAddr(eng gnet.Engine) (string, error) {
	fd, err := eng.Dup()
	if err != nil {
		return "", fmt.Errorf("dup listener: %w", err)
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return "", fmt.Errorf("getsockname: %w", err)
	}
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return net.JoinHostPort(net.IP(sa.Addr[:]).String(), strconv.Itoa(sa.Port)), nil
	case *syscall.SockaddrInet6:
		return net.JoinHostPort(net.IP(sa.Addr[:]).String(), strconv.Itoa(sa.Port)), nil
	case *syscall.SockaddrUnix:
		return sa.Name, nil
	}
	return "", fmt.Errorf("listener bound to a %T", sa)
}

// OnTraffic echoes everything buffered: Next(-1) hands out the inbound
// buffer without copying and Write queues it on the outbound one.
func (e *echo) OnTraffic(c gnet.Conn) gnet.Action {
	buf, err := c.Next(-1)
	if err != nil {
		return gnet.Close
	}
	if _, err := c.Write(buf); err != nil {
		return gnet.Close
	}
	return gnet.None
}

func serve(ctx context.Context, o peer.Options) error {
	e := &echo{o: o, proto: fmt.Sprintf("%s://%s", o.Network, o.Address)}
	opts := []gnet.Option{gnet.WithMulticore(true)}
	if o.Loops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(o.Loops))
	}
	done := make(chan error, 1)
	go func() { done <- gnet.Run(e, e.proto, opts...) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		if err := gnet.Stop(context.Background(), e.proto); err != nil {
			return err
		}
		return <-done
	}
}
