//go:build linux

package main

import (
	"hash/maphash"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/oneshot-io/oneshot/reactor"
)

// UDP echo answers whoever a datagram says sent it, and the source address
// of a datagram is whatever its sender wrote there. Unguarded, one datagram
// whose source is echod's own socket makes echod answer itself forever (a
// whole core, from one packet); two echo services spoofed at each other
// ping-pong the same way; and echod reflects traffic at any victim. That is
// why RFC 862 services are off by default on most systems. udpEcho drops
// what can only be such traffic and bounds the replies to each source.

// dropReason says why a datagram was not echoed. Each has its own series
// of echod_udp_dropped_packets_total.
type dropReason int

const (
	// dropOwnAddress: from one of echod's own UDP sockets (this one or
	// another): echoing it starts a loop that never ends.
	dropOwnAddress dropReason = iota
	// dropPortZero: source port 0, which no socket can receive on.
	dropPortZero
	// dropServicePort: a source port below 1024, where services such as
	// echo (7), chargen (19) or DNS (53) listen and may answer back; no
	// client sends from there.
	dropServicePort
	// dropBadAddress: an unspecified, multicast or broadcast source, to
	// which a reply would go nowhere or to many.
	dropBadAddress
	// dropRateLimited: beyond --udp-rate replies a second to that source.
	dropRateLimited

	numDropReasons
)

// dropReasonNames are the reason label values, indexed by dropReason.
var dropReasonNames = [numDropReasons]string{
	dropOwnAddress:  "own_address",
	dropPortZero:    "port_zero",
	dropServicePort: "service_port",
	dropBadAddress:  "bad_address",
	dropRateLimited: "rate_limited",
}

func (r dropReason) String() string { return dropReasonNames[r] }

// firstClientPort is the lowest source port a datagram may come from:
// below it are the well-known service ports.
const firstClientPort = 1024

// udpEcho echoes the datagrams of one UDP socket and counts them.
type udpEcho struct {
	log   *zap.Logger               // constant
	own   *atomic.Pointer[ownAddrs] // shared by every udpEcho of the server; grows as sockets bind
	rate  *rateTable                // nil = no limit; owned by the socket's loop goroutine
	pc    *reactor.PacketConn       // constant after startReactor; OnPacket, which may run before, must not read it
	label string                    // constant after startReactor; likewise

	packetsIn, packetsOut, bytesIn, bytesOut, sendErrors atomic.Uint64
	dropped                                              [numDropReasons]atomic.Uint64
}

// OnPacket runs on the socket's loop goroutine, one datagram at a time:
// the rate table needs no lock.
func (u *udpEcho) OnPacket(p *reactor.PacketConn, b []byte, from netip.AddrPort) {
	u.packetsIn.Add(1)
	u.bytesIn.Add(uint64(len(b)))
	if reason, drop := u.screen(from); drop {
		u.dropped[reason].Add(1)
		if ce := u.log.Check(zap.DebugLevel, "udp datagram dropped"); ce != nil {
			ce.Write(zap.Stringer("remote", from), zap.Stringer("reason", reason), zap.Stringer("local", p.Addr()))
		}
		return
	}
	n, err := p.WriteTo(b, from)
	if err != nil {
		u.sendErrors.Add(1)
		if ce := u.log.Check(zap.DebugLevel, "udp echo"); ce != nil {
			ce.Write(zap.Stringer("remote", from), zap.Error(err))
		}
		return
	}
	u.packetsOut.Add(1)
	u.bytesOut.Add(uint64(n))
}

// screen reports whether a datagram from from must not be echoed, and why.
// The cheap checks come first, the rate last: a datagram dropped for its
// address spends none of its source's replies.
func (u *udpEcho) screen(from netip.AddrPort) (dropReason, bool) {
	addr := from.Addr().Unmap()
	switch port := from.Port(); {
	case !addr.IsValid() || addr.IsUnspecified() || addr.IsMulticast() || addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return dropBadAddress, true
	case port == 0:
		return dropPortZero, true
	case port < firstClientPort:
		return dropServicePort, true
	}
	if own := u.own.Load(); own != nil && own.has(netip.AddrPortFrom(addr, from.Port())) {
		return dropOwnAddress, true
	}
	if u.rate != nil && !u.rate.allow(addr, time.Now()) {
		return dropRateLimited, true
	}
	return 0, false
}

func (u *udpEcho) counters() packetCounters {
	c := packetCounters{
		packetsIn: u.packetsIn.Load(), packetsOut: u.packetsOut.Load(),
		bytesIn: u.bytesIn.Load(), bytesOut: u.bytesOut.Load(),
		sendErrors: u.sendErrors.Load(),
	}
	for i := range u.dropped {
		c.dropped[i] = u.dropped[i].Load()
	}
	return c
}

// ownAddrs is the set of addresses echod's UDP sockets receive on. It is
// immutable: binding another socket publishes a new set (with).
type ownAddrs struct {
	exact    map[netip.AddrPort]bool // sockets bound to one address
	anyPorts map[uint16]bool         // sockets bound to 0.0.0.0 or [::]: every local address, this port
	local    map[netip.Addr]bool     // the host's addresses when echod started; loopback is always local
}

// newOwnAddrs returns an empty set for a host with the given addresses.
func newOwnAddrs(local []netip.Addr) *ownAddrs {
	o := &ownAddrs{exact: map[netip.AddrPort]bool{}, anyPorts: map[uint16]bool{}, local: map[netip.Addr]bool{}}
	for _, a := range local {
		o.local[a.Unmap()] = true
	}
	return o
}

// with returns a copy of o that also holds bound, a socket's address.
func (o *ownAddrs) with(bound netip.AddrPort) *ownAddrs {
	n := &ownAddrs{exact: make(map[netip.AddrPort]bool, len(o.exact)+1), anyPorts: make(map[uint16]bool, len(o.anyPorts)+1), local: o.local}
	for k := range o.exact {
		n.exact[k] = true
	}
	for k := range o.anyPorts {
		n.anyPorts[k] = true
	}
	if a := bound.Addr().Unmap(); a.IsUnspecified() {
		n.anyPorts[bound.Port()] = true
	} else {
		n.exact[netip.AddrPortFrom(a, bound.Port())] = true
	}
	return n
}

// has reports whether a (unmapped) is an address one of the sockets
// receives on: the address a socket is bound to, or a local address with
// the port of a socket bound to every address.
func (o *ownAddrs) has(a netip.AddrPort) bool {
	if o.exact[a] {
		return true
	}
	return o.anyPorts[a.Port()] && (a.Addr().IsLoopback() || o.local[a.Addr()])
}

// localAddrs returns the host's interface addresses (through netlink).
// On error the caller still has loopback, which ownAddrs always counts as
// local: a wildcard socket then refuses its own loopback address, and
// --udp-rate bounds a loop through any other.
func localAddrs() ([]netip.Addr, error) {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ifa := range ifas {
		if n, ok := ifa.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	return out, nil
}

// rateBuckets is the size of a rateTable: 4096 buckets of 8 bytes, 32 KiB
// per UDP socket whatever the number of sources.
const rateBuckets = 1 << 12

// rateTable bounds the replies to each source host (an IPv4 address, or an
// IPv6 /64, which one host may fill with addresses) to rate a second after
// a burst of as many. It is a table of GCRA buckets ("generic cell rate
// algorithm": a token bucket kept as one theoretical arrival time) indexed
// by a seeded hash of the source: memory is fixed however many sources a
// spoofer invents, and sources that share a bucket share its rate, so no
// source ever gets more than rate, some get less. Not safe for concurrent
// use: one socket's loop goroutine owns it.
type rateTable struct {
	interval  int64        // ns between replies at the steady rate; constant
	tolerance int64        // ns a source may run ahead of it: the burst; constant
	seed      maphash.Seed // constant: a random seed, so that a spoofer cannot aim at one bucket
	epoch     time.Time    // constant: tat values are ns since it
	tat       [rateBuckets]int64
}

// newRateTable returns a table allowing rate replies a second per source,
// in bursts of up to rate. rate must be more than 0.
func newRateTable(rate int, now time.Time) *rateTable {
	interval := max(int64(time.Second)/int64(rate), 1)
	return &rateTable{
		interval:  interval,
		tolerance: interval * int64(rate-1),
		seed:      maphash.MakeSeed(),
		epoch:     now,
	}
}

// bucket returns the index of a's bucket.
func (r *rateTable) bucket(a netip.Addr) int {
	key := a.Unmap().As16()
	if a.Unmap().Is6() {
		clear(key[8:]) // the /64
	}
	return int(maphash.Comparable(r.seed, key) % rateBuckets)
}

// allow reports whether a reply to a may be sent at now, and if so counts
// it against a's bucket.
func (r *rateTable) allow(a netip.Addr, now time.Time) bool {
	t := now.Sub(r.epoch).Nanoseconds()
	b := &r.tat[r.bucket(a)]
	tat := max(*b, t)
	if tat-t > r.tolerance {
		return false
	}
	*b = tat + r.interval
	return true
}

// wildcardHost reports whether a HOST:PORT address binds every address
// of the host: an empty host, 0.0.0.0 or ::.
func wildcardHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsUnspecified()
}
