//go:build linux

package ring_test

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/ring"
)

// TestAcceptMultishot: one ACCEPT posts a CQE per connection, each with
// CQEFMore and a new descriptor opened non-blocking and close-on-exec,
// and its cancel ends it with one CQE without CQEFMore (-ECANCELED).
func TestAcceptMultishot(t *testing.T) {
	r := newRing(t, ring.Config{Entries: 8})
	p, err := r.Probe()
	if err != nil {
		t.Skipf("probe: %v", err)
	}
	if !ring.SupportsRecvMultishot(p) { // 6.0; multishot ACCEPT came in 5.19
		t.Skip("kernel before Linux 6.0")
	}
	ls, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ls)
	if err := unix.Bind(ls, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(ls, 8); err != nil {
		t.Fatal(err)
	}
	addr, _ := unix.Getsockname(ls)
	prep(t, r, func(s *ring.SQE) {
		s.PrepAcceptMultishot(int32(ls), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 7)
	})
	const n = 3
	for i := 0; i < n; i++ {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(c)
		if err := unix.Connect(c, addr); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[int32]bool{}
	for _, c := range waitCQEs(t, r, n) {
		if c.UserData != 7 || c.Res < 0 || c.Flags&ring.CQEFMore == 0 {
			t.Fatalf("accept CQE %+v: want user_data 7, a descriptor and CQEFMore", c)
		}
		if seen[c.Res] {
			t.Fatalf("descriptor %d accepted twice", c.Res)
		}
		seen[c.Res] = true
		fd := int(c.Res)
		defer unix.Close(fd)
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
			t.Fatalf("accepted fd %d flags %#x, %v: want O_NONBLOCK", fd, fl, err)
		}
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
			t.Fatalf("accepted fd %d: FD_CLOEXEC missing (%#x, %v)", fd, fl, err)
		}
		if _, err := unix.Getpeername(fd); err != nil {
			t.Fatalf("accepted fd %d: getpeername: %v", fd, err)
		}
	}
	prep(t, r, func(s *ring.SQE) { s.PrepCancel(7, 0, 8) })
	var end ring.CQE
	for _, c := range waitCQEs(t, r, 2) {
		if c.UserData == 7 {
			end = c
		}
	}
	if end.UserData != 7 || end.Res != -int32(unix.ECANCELED) || end.Flags&ring.CQEFMore != 0 {
		t.Fatalf("the accept's last CQE %+v: want -ECANCELED without CQEFMore", end)
	}
}
