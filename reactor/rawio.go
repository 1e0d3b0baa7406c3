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
