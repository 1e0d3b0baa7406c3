//go:build linux

package reactor

import (
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

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
		return &unix.SockaddrInet6{Port: int(to.Port()), Addr: ip.As16()}
	}
	if ip.Is4In6() {
		ip = ip.Unmap()
	}
	if !ip.Is4() {
		return nil
	}
	return &unix.SockaddrInet4{Port: int(to.Port()), Addr: ip.As4()}
}
