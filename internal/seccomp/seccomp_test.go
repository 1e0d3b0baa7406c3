package seccomp_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/internal/seccomp"
)

func TestMain(m *testing.M) {
	if _, err := seccomp.ApplyFromEnv(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// ioUringSetup calls io_uring_setup directly: this package must not depend
// on ring/, and the raw errno is what the filter promises.
func ioUringSetup() (int, unix.Errno) {
	var params [120]byte // struct io_uring_params, zeroed
	fd, _, e := unix.Syscall(425, 4, uintptr(unsafe.Pointer(&params[0])), 0)
	return int(fd), e
}

// TestChildDenied runs only in a child started by Command; there it checks
// that the filter is in force with the errno the parent asked for, and that
// other syscalls still work.
func TestChildDenied(t *testing.T) {
	want, ok := seccomp.Denied()
	if !ok {
		t.Skip("runs only as the child of TestDenyIOUring")
	}
	fd, errno := ioUringSetup()
	if errno != want {
		if errno == 0 {
			unix.Close(fd)
		}
		t.Fatalf("io_uring_setup under the filter: errno %v, want %v", errno, want)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatalf("eventfd under the filter: %v (the filter must deny io_uring only)", err)
	}
	unix.Close(efd)
}

func TestDenyIOUring(t *testing.T) {
	for _, errno := range []unix.Errno{unix.EPERM, unix.ENOSYS} {
		t.Run(errno.Error(), func(t *testing.T) {
			out, err := seccomp.Command(errno, "TestChildDenied").CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "--- PASS: TestChildDenied") {
				t.Fatalf("child did not run the denied test:\n%s", out)
			}
		})
	}
}

func TestExecCommand(t *testing.T) {
	// The launcher execs this same binary again, now with only EnvVar set,
	// to run TestChildDenied: a PASS proves the filter survived the exec.
	cmd := seccomp.ExecCommand(unix.EPERM, os.Args[0], "-test.run=^TestChildDenied$", "-test.v")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("launcher: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestChildDenied") {
		t.Fatalf("exec'd binary did not run the denied test:\n%s", out)
	}
}

func TestExecCommandReportsExecFailure(t *testing.T) {
	cmd := seccomp.ExecCommand(unix.EPERM, "/nonexistent/echod")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("launcher of a missing binary: err %v, want exit status 3\n%s", err, out)
	}
	if !strings.Contains(string(out), "/nonexistent/echod") {
		t.Fatalf("launcher error does not name the binary:\n%s", out)
	}
}

func TestParseErrno(t *testing.T) {
	tests := []struct {
		in      string
		want    unix.Errno
		wantErr bool
	}{
		{"EPERM", unix.EPERM, false},
		{"ENOSYS", unix.ENOSYS, false},
		{"eperm", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := seccomp.ParseErrno(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseErrno(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParentUnaffected(t *testing.T) {
	if _, ok := seccomp.Denied(); ok {
		t.Skip("this is a filtered child")
	}
	fd, errno := ioUringSetup()
	switch errno {
	case 0:
		unix.Close(fd)
	case unix.ENOSYS, unix.EPERM:
		t.Skipf("io_uring unavailable on this machine (%v): nothing to compare", errno)
	default:
		t.Fatalf("io_uring_setup in the parent: %v", errno)
	}
}
