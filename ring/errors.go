//go:build linux

package ring

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by every method of a Ring after Close, and by a
// second Close.
var ErrClosed = errors.New("ring: closed")

// ErrSQFull is returned by GetSQE when every SQ slot holds a request the
// kernel has not consumed yet. Submit (or SubmitAndWait) frees slots; an SQE
// is never overwritten.
var ErrSQFull = errors.New("ring: submission queue full")

// ErrUnsupportedFlags is returned by New for Config.Flags bits this package
// does not support (only the SetupFlags constants are). Such a ring would be
// laid out or driven differently from what the package reads and writes: a
// NO_SQARRAY ring, for one, has no SQ index array, and filling it would
// overwrite the shared head and tail words. It is a caller's mistake, not
// io_uring being unavailable, so it does not match ErrUnavailable.
var ErrUnsupportedFlags = errors.New("ring: setup flags not supported by this package")

// ErrUnavailable is matched (errors.Is) by every *UnavailableError: io_uring
// cannot be used here, and the error's Reason says why.
var ErrUnavailable = errors.New("ring: io_uring unavailable")

// UnavailableError says why io_uring cannot be used on this machine or in
// this process. It unwraps to its errno, so errors.Is(err, unix.EPERM)
// works, and it matches ErrUnavailable.
type UnavailableError struct {
	// Op is what failed: "io_uring_setup", "mmap", "probe" or "opcode".
	Op string
	// Errno is the kernel's answer; EOPNOTSUPP for a missing opcode.
	Errno unix.Errno
	// Reason says, in words a user can act on, why and what to do.
	Reason string
}

// Error reports the operation, the errno and the reason.
func (e *UnavailableError) Error() string {
	return fmt.Sprintf("ring: io_uring unavailable: %s: %s", e.Op, e.Reason)
}

// Unwrap returns the errno.
func (e *UnavailableError) Unwrap() error { return e.Errno }

// Is reports whether target is ErrUnavailable.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// ioUringDisabledPath is the sysctl that can switch io_uring off (6.6+):
// 0 enabled, 1 only for kernel.io_uring_group members and CAP_SYS_ADMIN,
// 2 disabled for everyone.
const ioUringDisabledPath = "/proc/sys/kernel/io_uring_disabled"

// readIOUringDisabled returns the sysctl's value, or "" when it cannot be
// read (kernels before 6.6 do not have it).
func readIOUringDisabled() string {
	b, err := os.ReadFile(ioUringDisabledPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// unavailable builds the error for a failed setup-time syscall, reading the
// io_uring_disabled sysctl when the answer is EPERM.
func unavailable(op string, errno unix.Errno, flags SetupFlags) *UnavailableError {
	disabled := ""
	if errno == unix.EPERM {
		disabled = readIOUringDisabled()
	}
	return &UnavailableError{Op: op, Errno: errno, Reason: reason(errno, disabled, flags)}
}

// reason explains errno from io_uring_setup (or mmap) to a user. disabled is
// the io_uring_disabled sysctl's value ("" if unknown); flags are the setup
// flags asked for.
func reason(errno unix.Errno, disabled string, flags SetupFlags) string {
	switch errno {
	case unix.EPERM:
		switch disabled {
		case "", "0":
			return "io_uring denied (EPERM): a seccomp profile such as Docker's default blocks " +
				"io_uring_setup; run with a profile that allows io_uring_setup, io_uring_enter " +
				"and io_uring_register, or use the epoll backend"
		case "1":
			return "io_uring denied (EPERM): kernel.io_uring_disabled=1 allows only members of " +
				"kernel.io_uring_group and CAP_SYS_ADMIN; join that group or set the sysctl to 0 " +
				"(a seccomp profile such as Docker's default can also deny it)"
		default:
			return "io_uring denied (EPERM): kernel.io_uring_disabled=" + disabled +
				" disables io_uring for every process; set the sysctl to 0 to enable it " +
				"(a seccomp profile such as Docker's default can also deny it)"
		}
	case unix.ENOSYS:
		return "io_uring not implemented (ENOSYS): the kernel is older than 5.1 or was built " +
			"without CONFIG_IO_URING (a seccomp filter can also answer ENOSYS); use the epoll backend"
	case unix.EINVAL:
		return fmt.Sprintf("kernel rejected the ring parameters (EINVAL): setup flags %v are "+
			"unknown to this kernel or not allowed together, or the entry count is out of range", flags)
	case unix.ENOMEM:
		return "not enough memory for the ring (ENOMEM): kernels before 5.12 charge rings to " +
			"RLIMIT_MEMLOCK; raise it (ulimit -l) or ask for fewer entries"
	case unix.EMFILE, unix.ENFILE:
		return fmt.Sprintf("no file descriptor left for the ring (%s): raise RLIMIT_NOFILE",
			unix.ErrnoName(errno))
	default:
		return fmt.Sprintf("%s (%s)", errno.Error(), unix.ErrnoName(errno))
	}
}

// missingOpcodes builds the error Check returns when the kernel lacks ops.
func missingOpcodes(ops []Opcode) *UnavailableError {
	names := make([]string, len(ops))
	for i, op := range ops {
		names[i] = "IORING_OP_" + op.String()
	}
	return &UnavailableError{
		Op:    "opcode",
		Errno: unix.EOPNOTSUPP,
		Reason: "the kernel does not support " + strings.Join(names, ", ") +
			"; upgrade the kernel or use the epoll backend",
	}
}
