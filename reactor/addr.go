//go:build linux

package reactor

import (
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// peerAddr is a connected peer's address, kept inline in its Conn: an IP
// address and port in 19 bytes, where a unix.Sockaddr costs an interface
// and an object of 32 to 64 bytes, per idle connection. What it has no
// room for, an IPv6 zone and a named Unix peer's name, is in the Conn's
// rare part; an IPv4 address is in ip[:4].
type peerAddr struct {
	ip   [16]byte
	port uint16
	fam  peerFam
}

type peerFam uint8

const (
	famNone   peerFam = iota // unknown (getpeername failed)
	famInet4                 // ip[:4], port
	famInet6                 // ip, port; the zone id in connRare.peerZone
	famUnix                  // named: the name in connRare.peerName
	famUnixAt                // unnamed or abstract-unnamed: "@", as unix.Accept4 names it
)

// peerOf converts an address from unix (getpeername, sockaddrOf) into a
// peerAddr and, when it needs one, a rare part holding the rest.
func peerOf(sa unix.Sockaddr) (peerAddr, *connRare) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		p := peerAddr{port: uint16(a.Port), fam: famInet4}
		copy(p.ip[:], a.Addr[:])
		return p, nil
	case *unix.SockaddrInet6:
		p := peerAddr{ip: a.Addr, port: uint16(a.Port), fam: famInet6}
		if a.ZoneId != 0 {
			return p, &connRare{peerZone: a.ZoneId}
		}
		return p, nil
	case *unix.SockaddrUnix:
		if a.Name == "@" {
			return peerAddr{fam: famUnixAt}, nil
		}
		return peerAddr{fam: famUnix}, &connRare{peerName: a.Name}
	}
	return peerAddr{}, nil
}

// addr returns p as net.Addr, as sockaddrToAddr returns the Sockaddr p
// came from; x is the Conn's rare part (nil if it has none).
func (p *peerAddr) addr(x *connRare, isUnix bool) net.Addr {
	switch p.fam {
	case famInet4:
		return &net.TCPAddr{IP: net.IPv4(p.ip[0], p.ip[1], p.ip[2], p.ip[3]), Port: int(p.port)}
	case famInet6:
		ip := make(net.IP, 16)
		copy(ip, p.ip[:])
		zone := ""
		if x != nil {
			zone = zoneName(x.peerZone)
		}
		return &net.TCPAddr{IP: ip, Port: int(p.port), Zone: zone}
	case famUnix:
		name := ""
		if x != nil {
			name = x.peerName
		}
		return &net.UnixAddr{Name: name, Net: "unix"}
	case famUnixAt:
		return &net.UnixAddr{Name: "@", Net: "unix"}
	}
	if isUnix {
		return &net.UnixAddr{Net: "unix"}
	}
	// Unknown: the peer reset the connection before its address was
	// looked up. A zero address, not nil, so that code printing it does
	// not panic.
	return &net.TCPAddr{}
}

// sockaddrToAddr converts what accept4 returned into a net.Addr.
func sockaddrToAddr(sa unix.Sockaddr, isUnix bool) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		ip := make(net.IP, 16)
		copy(ip, a.Addr[:])
		return &net.TCPAddr{IP: ip, Port: a.Port, Zone: zoneName(a.ZoneId)}
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: a.Name, Net: "unix"}
	}
	if isUnix {
		return &net.UnixAddr{Net: "unix"}
	}
	return nil
}

func zoneName(id uint32) string {
	if id == 0 {
		return ""
	}
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		return ifi.Name
	}
	return ""
}

func sockaddrToAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(a.Addr)
		if a.ZoneId != 0 {
			ip = ip.WithZone(zoneName(a.ZoneId))
		}
		return netip.AddrPortFrom(ip, uint16(a.Port))
	}
	return netip.AddrPort{}
}

// addrPortToSockaddr builds the destination for a socket bound to local:
// an IPv4 destination on an IPv6 socket becomes v4-mapped.
func addrPortToSockaddr(to netip.AddrPort, local net.Addr) unix.Sockaddr {
	ua, _ := local.(*net.UDPAddr)
	v6sock := ua != nil && ua.IP.To4() == nil
	ip := to.Addr()
	if v6sock {
		if ip.Is4() {
			ip = netip.AddrFrom16(ip.As16())
		}
		// A link-local peer's reply leaves by the interface its zone
		// names, as net's WriteTo does; without it the kernel picks one.
		return &unix.SockaddrInet6{Port: int(to.Port()), Addr: ip.As16(), ZoneId: zoneID(ip.Zone())}
	}
	if ip.Is4In6() {
		ip = ip.Unmap()
	}
	if !ip.Is4() {
		return nil
	}
	return &unix.SockaddrInet4{Port: int(to.Port()), Addr: ip.As4()}
}
