//go:build linux

// Package seccomp denies io_uring to the current process the way container
// runtimes do, so that tests can prove the epoll fallback and its diagnosis
// against the real kernel instead of a mock.
//
// Docker's default seccomp profile (moby #47532) makes io_uring_setup fail
// with EPERM; a kernel built without io_uring fails it with ENOSYS. DenyIOUring
// reproduces either by installing a classic-BPF seccomp filter on every thread
// of the process. A filter can never be removed and survives exec, so tests
// run the denied case in a child process:
//
//	func TestMain(m *testing.M) {
//		if _, err := seccomp.ApplyFromEnv(); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(3)
//		}
//		os.Exit(m.Run())
//	}
//
// and a parent test runs Command(unix.EPERM, "TestChild") to run TestChild
// again in a child whose io_uring calls fail with EPERM, or
// ExecCommand(unix.EPERM, binary, args...) to run any binary (echod) that way.
//
// The package is internal: it exists for tests and touches only the process
// that calls it.
package seccomp

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// EnvVar names the environment variable that asks ApplyFromEnv to deny
// io_uring; its value is the errno's name, "EPERM" or "ENOSYS".
const EnvVar = "ONESHOT_SECCOMP_DENY_IOURING"

// ExecEnvVar names the environment variable that asks ApplyFromEnv, after
// installing the filter, to exec the binary it names with the process's
// arguments (os.Args[1:]).
const ExecEnvVar = "ONESHOT_SECCOMP_EXEC"

// ErrUnsupportedArch reports that the filter has no audit architecture for
// this GOARCH, so it cannot tell which syscall table a number belongs to.
var ErrUnsupportedArch = errors.New("seccomp: unsupported architecture")

// io_uring's syscall numbers are the same in the generic table (arm64) and on
// x86-64: 425, 426 and 427.
const (
	sysIOUringSetup    = 425
	sysIOUringEnter    = 426
	sysIOUringRegister = 427
)

// Classic BPF opcodes and seccomp return values (linux/filter.h,
// linux/seccomp.h), spelled out because x/sys/unix does not export them all.
const (
	bpfLdWAbs   = 0x20 // BPF_LD | BPF_W | BPF_ABS
	bpfJeqK     = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	bpfRetK     = 0x06 // BPF_RET | BPF_K
	retAllow    = 0x7fff0000
	retErrno    = 0x00050000
	offsetNr    = 0 // struct seccomp_data.nr
	offsetArch  = 4 // struct seccomp_data.arch
	filterTSYNC = 1 // SECCOMP_FILTER_FLAG_TSYNC
	setModeFilt = 1 // SECCOMP_SET_MODE_FILTER
)

func auditArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return 0xc000003e, nil // AUDIT_ARCH_X86_64
	case "arm64":
		return 0xc00000b7, nil // AUDIT_ARCH_AARCH64
	}
	return 0, fmt.Errorf("%w: %s", ErrUnsupportedArch, runtime.GOARCH)
}

// program returns the filter: io_uring_setup, io_uring_enter and
// io_uring_register fail with errno; every other syscall, and every syscall
// of a foreign architecture, is allowed.
func program(arch uint32, errno unix.Errno) []unix.SockFilter {
	deny := uint32(retErrno | (uint32(errno) & 0xffff))
	return []unix.SockFilter{
		{Code: bpfLdWAbs, K: offsetArch},
		{Code: bpfJeqK, Jt: 0, Jf: 4, K: arch}, // foreign arch → allow
		{Code: bpfLdWAbs, K: offsetNr},
		{Code: bpfJeqK, Jt: 3, Jf: 0, K: sysIOUringSetup},
		{Code: bpfJeqK, Jt: 2, Jf: 0, K: sysIOUringEnter},
		{Code: bpfJeqK, Jt: 1, Jf: 0, K: sysIOUringRegister},
		{Code: bpfRetK, K: retAllow},
		{Code: bpfRetK, K: deny},
	}
}

// DenyIOUring installs a seccomp filter on every thread of the process
// (SECCOMP_FILTER_FLAG_TSYNC) under which io_uring_setup, io_uring_enter and
// io_uring_register fail with errno. It cannot be undone.
func DenyIOUring(errno unix.Errno) error {
	arch, err := auditArch()
	if err != nil {
		return err
	}
	prog := program(arch, errno)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	// Without CAP_SYS_ADMIN the kernel demands no_new_privs; as root it is
	// harmless and keeps the filter honest about what an unprivileged
	// container gets. no_new_privs is a per-thread attribute, checked on the
	// thread that calls seccomp(2) (TSYNC then copies it to the others), so
	// both calls must run on one OS thread: unlocked, the goroutine may move
	// between them and an unprivileged run fails with EACCES now and then.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, setModeFilt, filterTSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if e != 0 {
		return fmt.Errorf("seccomp: install filter: %w", e)
	}
	if r != 0 {
		// With TSYNC a positive return is the id of a thread that could not
		// be synchronised: the filter was not installed anywhere.
		return fmt.Errorf("seccomp: thread %d could not be synchronised", r)
	}
	return nil
}

// ParseErrno returns the errno named by s ("EPERM" or "ENOSYS").
func ParseErrno(s string) (unix.Errno, error) {
	switch s {
	case "EPERM":
		return unix.EPERM, nil
	case "ENOSYS":
		return unix.ENOSYS, nil
	}
	return 0, fmt.Errorf("seccomp: %s=%q: want EPERM or ENOSYS", EnvVar, s)
}

// errnoName is the inverse of ParseErrno.
func errnoName(errno unix.Errno) string {
	switch errno {
	case unix.EPERM:
		return "EPERM"
	case unix.ENOSYS:
		return "ENOSYS"
	}
	panic(fmt.Sprintf("seccomp: errno %d (%v) is not one the filter models", int(errno), errno))
}

// Denied reports whether this process was started to run with io_uring
// denied, and with which errno. A child test uses it to decide whether it is
// the child.
func Denied() (unix.Errno, bool) {
	s := os.Getenv(EnvVar)
	if s == "" {
		return 0, false
	}
	errno, err := ParseErrno(s)
	if err != nil {
		return 0, false
	}
	return errno, true
}

// ApplyFromEnv installs the filter if EnvVar is set and reports whether it
// did. If ExecEnvVar is also set, it then execs that binary with os.Args[1:]
// and does not return unless the exec fails. Call it first thing in TestMain.
func ApplyFromEnv() (applied bool, err error) {
	s := os.Getenv(EnvVar)
	if s == "" {
		return false, nil
	}
	errno, err := ParseErrno(s)
	if err != nil {
		return false, err
	}
	if err := DenyIOUring(errno); err != nil {
		return false, err
	}
	bin := os.Getenv(ExecEnvVar)
	if bin == "" {
		return true, nil
	}
	// The exec'd program must not exec again; EnvVar stays so it can tell.
	if err := os.Unsetenv(ExecEnvVar); err != nil {
		return true, fmt.Errorf("seccomp: %w", err)
	}
	argv := append([]string{bin}, os.Args[1:]...)
	err = syscall.Exec(bin, argv, os.Environ())
	return true, fmt.Errorf("seccomp: exec %s: %w", bin, err)
}

// Command returns a command that runs the test named testName again, in a
// child test binary whose io_uring syscalls fail with errno. The caller sets
// Stdout/Stderr and runs it; the child's TestMain must call ApplyFromEnv.
func Command(errno unix.Errno, testName string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^"+testName+"$", "-test.v", "-test.count=1")
	// A -race binary sleeps a second at exit by default; the child's report
	// is all the parent waits for.
	race := "GORACE=atexit_sleep_ms=0"
	if v := os.Getenv("GORACE"); v != "" {
		race += " " + v
	}
	cmd.Env = append(os.Environ(), EnvVar+"="+errnoName(errno), race)
	return cmd
}

// ExecCommand returns a command that runs binary with args under a filter
// that fails io_uring with errno. It starts the current test binary as a
// launcher: its TestMain's ApplyFromEnv installs the filter and execs binary,
// so the PID of the returned command is binary's PID once it runs.
func ExecCommand(errno unix.Errno, binary string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), EnvVar+"="+errnoName(errno), ExecEnvVar+"="+binary)
	return cmd
}
