//go:build linux

package reactor

import (
	"context"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// DialAddrs dials TCP addresses as a dial of a resolved name does:
// primaries one after another, each with its share of ctx's time, and
// fallbacks (the other family's, in a real dial) from delay on or once
// the primaries failed. It returns the peer of the socket that
// connected, which it closes.
func DialAddrs(ctx context.Context, r *Reactor, primaries, fallbacks []*net.TCPAddr, delay time.Duration) (net.Addr, error) {
	conv := func(as []*net.TCPAddr) []dialAddr {
		var out []dialAddr
		for _, a := range as {
			out = append(out, newDialAddr(a.AddrPort().Addr().Unmap(), a.Port))
		}
		return out
	}
	fd, err := r.dialParallel(ctx, conv(primaries), conv(fallbacks), delay, func(a dialAddr, err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: a.raddr, Err: err}
	}, nil)
	if err != nil {
		return nil, err
	}
	defer closePolled(r, fd)
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return nil, err
	}
	return sockaddrToAddr(sa, false), nil
}
