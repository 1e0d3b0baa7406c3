package reactor_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/internal/seccomp"
	"github.com/oneshot-io/oneshot/reactor"
)

// TestUringDenied runs itself again in a child whose io_uring syscalls fail
// the way Docker's default seccomp profile (EPERM) or an old kernel (ENOSYS)
// makes them fail (moby #47532, netty io_uring #41): "uring" must be an
// error wrapping ErrUnavailable that names the reason, and "auto" must serve
// on epoll and say why (DESIGN §2.7).
func TestUringDenied(t *testing.T) {
	if errno, child := seccomp.Denied(); child {
		_, uerr := reactor.New(reactor.Config{Backend: reactor.BackendUring, Loops: 1})
		err := uerr
		if !errors.Is(err, reactor.ErrUnavailable) {
			t.Fatalf("New(uring) under a %v filter = %v, want ErrUnavailable", errno, err)
		}
		want := map[unix.Errno]string{unix.EPERM: "EPERM", unix.ENOSYS: "ENOSYS"}[errno]
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("New(uring) error %q does not name %s", err, want)
		}
		r, err := reactor.New(reactor.Config{Backend: reactor.BackendAuto, Loops: 2})
		if err != nil {
			t.Fatalf("New(auto) under a %v filter: %v", errno, err)
		}
		defer r.Close()
		if r.Backend() != reactor.BackendEpoll || !strings.Contains(r.BackendReason(), want) {
			t.Fatalf("auto chose %s because %q; want epoll naming %s", r.Backend(), r.BackendReason(), want)
		}
		a, _ := pair(t)
		got := make(chan reactor.Result, 1)
		if _, err := r.Arm(a, reactor.Out, func(res reactor.Result) { got <- res }); err != nil {
			t.Fatal(err)
		}
		if res := <-got; res.Err != nil {
			t.Fatalf("serving on the fallback: %v", res.Err)
		}
		t.Logf("uring: %v; auto: %s (%s)", uerr, r.Backend(), r.BackendReason())
		return
	}
	for _, errno := range []unix.Errno{unix.EPERM, unix.ENOSYS} {
		t.Run(errno.Error(), func(t *testing.T) {
			cmd := seccomp.Command(errno, "TestUringDenied")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("child under a %v filter: %v\n%s", errno, err, out.String())
			}
			if !strings.Contains(out.String(), "--- PASS: TestUringDenied") {
				t.Fatalf("child did not pass:\n%s", out.String())
			}
			for _, line := range strings.Split(out.String(), "\n") {
				if strings.Contains(line, "uring: ") {
					t.Log("child:", strings.TrimSpace(line))
				}
			}
		})
	}
}
