//go:build linux

package reactor

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The connection layer's reads and writes go through the raw system-call
// entry, which skips the Go scheduler's entersyscall/exitsyscall. Every fd
// they touch is non-blocking, so none of them can sleep and hold the P.
// That entry matters more than its nanoseconds suggest: a blocking-entry
// system call made while every P was idle wakes sysmon, which then polls
// every 20 µs until the program goes idle again. A parked loop goes idle
// after each message on a quiet connection, so each message woke sysmon:
// a quarter of echod's server CPU at 1 connection × 64 B (perf, 2026-11-29).

// rawRead is unix.Read for a non-blocking fd.
func rawRead(fd int, p []byte) (int, error) { return rawIO(unix.SYS_READ, fd, p) }

// rawWrite is unix.Write for a non-blocking fd.
func rawWrite(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

// rawIO is read(2) or write(2) (trap) of p on fd, errors as unix.Errno.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	var base unsafe.Pointer
	if len(p) > 0 {
		base = unsafe.Pointer(&p[0])
	}
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(base), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// rawWritev is writev(2) for a non-blocking fd.
func rawWritev(fd int, iov []unix.Iovec) (int, unix.Errno) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(n), e
}

// rawAccept is accept4(2), non-blocking and close-on-exec, for a
// non-blocking listening socket, reading the peer's address into rsa, a
// buffer its caller keeps: unix.Accept4 allocates that buffer on every
// call, garbage per connection that brings the next collection closer.
// The caller decodes rsa (sockaddrOf, peerOfRaw). A peer of a family
// sockaddrOf cannot decode is closed and reported as EAFNOSUPPORT, as
// unix.Accept4 reports it.
func rawAccept(fd int, rsa *unix.RawSockaddrAny) (int, error) {
	*rsa = unix.RawSockaddrAny{} // an unnamed Unix peer writes no path
	n := uint32(unix.SizeofSockaddrAny)
	nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(rsa)),
		uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, e
	}
	switch rsa.Addr.Family {
	case unix.AF_INET, unix.AF_INET6, unix.AF_UNIX:
		return int(nfd), nil
	}
	unix.Close(int(nfd))
	return -1, unix.EAFNOSUPPORT
}

// sockaddrOf converts a kernel address in rsa as x/sys/unix does for
// Accept4 on a stream socket: an abstract or unnamed Unix peer's name
// starts with '@' and ends at the first NUL. It may rewrite rsa.
func sockaddrOf(rsa *unix.RawSockaddrAny) (unix.Sockaddr, error) {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		pp := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&pp.Port))
		return &unix.SockaddrInet4{Port: int(port[0])<<8 | int(port[1]), Addr: pp.Addr}, nil
	case unix.AF_INET6:
		pp := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&pp.Port))
		return &unix.SockaddrInet6{Port: int(port[0])<<8 | int(port[1]), ZoneId: pp.Scope_id, Addr: pp.Addr}, nil
	case unix.AF_UNIX:
		pp := (*unix.RawSockaddrUnix)(unsafe.Pointer(rsa))
		if pp.Path[0] == 0 {
			pp.Path[0] = '@'
		}
		path := unsafe.Slice((*byte)(unsafe.Pointer(&pp.Path[0])), len(pp.Path))
		end := 0
		for end < len(path) && path[end] != 0 {
			end++
		}
		return &unix.SockaddrUnix{Name: string(path[:end])}, nil
	}
	return nil, unix.EAFNOSUPPORT
}

// rawGetpeername is getpeername(2) into rsa, which rawAccept's callers
// decode the same way.
func rawGetpeername(fd int, rsa *unix.RawSockaddrAny) error {
	*rsa = unix.RawSockaddrAny{} // an unnamed Unix peer writes no path
	n := uint32(unix.SizeofSockaddrAny)
	_, _, e := unix.RawSyscall(unix.SYS_GETPEERNAME, uintptr(fd), uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return e
	}
	return nil
}

// peerOfRaw decodes the address rawAccept read into rsa for a Conn,
// allocating nothing for an IP peer (see peerAddr).
func peerOfRaw(rsa *unix.RawSockaddrAny) (peerAddr, *connRare) {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		pp := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&pp.Port))
		p := peerAddr{port: uint16(port[0])<<8 | uint16(port[1]), fam: famInet4}
		copy(p.ip[:], pp.Addr[:])
		return p, nil
	case unix.AF_INET6:
		pp := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&pp.Port))
		p := peerAddr{ip: pp.Addr, port: uint16(port[0])<<8 | uint16(port[1]), fam: famInet6}
		if pp.Scope_id != 0 {
			return p, &connRare{peerZone: pp.Scope_id}
		}
		return p, nil
	}
	sa, _ := sockaddrOf(rsa)
	return peerOf(sa)
}
