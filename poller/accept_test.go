//go:build linux

package poller_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
)

// tcpListener opens a non-blocking listening socket on 127.0.0.1:0 and
// returns it with its address; it is closed at cleanup.
func tcpListener(t *testing.T) (int, unix.Sockaddr) {
	t.Helper()
	ls, addr := openTCPListener(t, func(fd int) { t.Cleanup(func() { unix.Close(fd) }) })
	return ls, addr
}

// openTCPListener is tcpListener for a caller that closes the socket
// itself: own takes it as soon as it is open.
func openTCPListener(t *testing.T, own func(fd int)) (int, unix.Sockaddr) {
	t.Helper()
	ls, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	own(ls)
	if err := unix.Bind(ls, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(ls, 64); err != nil {
		t.Fatal(err)
	}
	addr, err := unix.Getsockname(ls)
	if err != nil {
		t.Fatal(err)
	}
	return ls, addr
}

// dialTCP connects a blocking client to addr and returns it with its own
// address, as the server's getpeername will name it.
func dialTCP(t *testing.T, addr unix.Sockaddr) (int, unix.Sockaddr) {
	t.Helper()
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(c) })
	if err := unix.Connect(c, addr); err != nil {
		t.Fatal(err)
	}
	self, err := unix.Getsockname(c)
	if err != nil {
		t.Fatal(err)
	}
	return c, self
}

// pollAccepts runs one Wait and returns the descriptors its Events hand
// over, checking each Event as recvHarness.poll does; the tag's last Event
// is recorded (a second fails the test).
func (h *recvHarness) pollAccepts(timeout time.Duration) []int {
	h.t.Helper()
	n, err := h.p.Wait(h.buf, timeout)
	if err != nil {
		h.t.Fatalf("Wait: %v", err)
	}
	var fds []int
	for _, ev := range h.buf[:n] {
		if ev.HasBuf {
			h.t.Errorf("accept Event %v lends a buffer", ev)
		}
		if ev.HasFd {
			if ev.N < 0 || ev.Events != poller.In {
				h.t.Errorf("accept Event %v: want In and a descriptor", ev)
			}
			fds = append(fds, int(ev.N)) // the caller closes them
		}
		if ev.More {
			if !h.armed[ev.Tag] {
				h.t.Errorf("Event %v for a tag not armed", ev)
			}
			continue
		}
		h.record(ev)
		h.ended[ev.Tag] = ev
	}
	return fds
}

// TestAcceptThroughRing: one multishot accept hands over each connection
// once, as a descriptor whose peer is the client that dialed; disarmed
// while clients keep dialing, it ends once, and every connection is
// either handed over before that end or still queued for accept4: none is
// lost, none comes twice.
func TestAcceptThroughRing(t *testing.T) {
	forEachRecv(t, func(t *testing.T, h *recvHarness) {
		ls, addr := tcpListener(t)
		tag := h.tag()
		if err := h.rc.Accept(tag, ls); err != nil {
			t.Fatalf("Accept: %v", err)
		}
		h.armed[tag] = true
		peers := map[string]bool{} // the clients' own addresses
		for range 5 {
			_, self := dialTCP(t, addr)
			peers[sockaddrKey(self)] = true
		}
		got := map[int]bool{}
		deadline := time.Now().Add(5 * time.Second)
		for len(got) < 5 && time.Now().Before(deadline) {
			for _, fd := range h.pollAccepts(time.Until(deadline)) {
				t.Cleanup(func() { unix.Close(fd) })
				if got[fd] {
					t.Fatalf("fd %d handed over twice", fd)
				}
				got[fd] = true
				sa, err := unix.Getpeername(fd)
				if err != nil || !peers[sockaddrKey(sa)] {
					t.Fatalf("accepted fd %d's peer %v (%v) is none of the clients", fd, sa, err)
				}
				delete(peers, sockaddrKey(sa))
			}
		}
		if len(got) != 5 {
			t.Fatalf("%d of 5 connections handed over within 5s", len(got))
		}
		// Disarm while more clients dial: each is handed over before the
		// end or left in the backlog.
		dialed := make(chan struct{})
		go func() {
			defer close(dialed)
			for range 5 {
				c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return
				}
				t.Cleanup(func() { unix.Close(c) })
				unix.Connect(c, addr)
			}
		}()
		if !h.p.Disarm(tag) {
			t.Fatal("Disarm of an armed accept = false")
		}
		<-dialed
		late := 0
		for {
			if _, ok := h.ended[tag]; ok {
				break
			}
			for _, fd := range h.pollAccepts(time.Second) {
				unix.Close(fd)
				late++
			}
		}
		if end := h.ended[tag]; !end.Canceled && end.Errno == 0 && !end.HasFd {
			t.Fatalf("the accept's end %v: want Canceled (or a last connection)", end)
		}
		queued := 0
		for {
			fd, _, err := unix.Accept4(ls, unix.SOCK_CLOEXEC)
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(fd)
			queued++
		}
		if late+queued != 5 {
			t.Fatalf("of 5 clients dialed while disarming, %d were handed over and %d queued", late, queued)
		}
		h.quiet()
	})
}

// TestAcceptClosedWithPoller: connections the kernel accepted for an
// accept whose Events nobody will read are closed by the poller's Close,
// not leaked: every client sees its connection end.
func TestAcceptClosedWithPoller(t *testing.T) {
	for _, c := range recvConfigs {
		t.Run(c.name, func(t *testing.T) {
			opts := c.opts
			opts.Recv = poller.RecvOptions{Buffers: 8, Size: 256}
			p := openPoller(t, opts)
			rc, why := poller.RingIOOf(p)
			if rc == nil {
				t.Skipf("no I/O path: %s", why)
			}
			ls, addr := tcpListener(t)
			if err := rc.Accept(99, ls); err != nil {
				t.Fatal(err)
			}
			buf := make([]poller.Event, 8)
			if n, err := p.Wait(buf, 0); err != nil || n != 0 { // submits the accept
				t.Fatalf("Wait = %d, %v", n, err)
			}
			var clients []int
			for range 3 {
				c, _ := dialTCP(t, addr)
				clients = append(clients, c)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			unix.Close(ls) // what the kernel did not accept is reset
			for i, c := range clients {
				// Wait up to 2 s for the end (EOF or reset) to arrive.
				deadline := time.Now().Add(2 * time.Second)
				for time.Now().Before(deadline) {
					pfd := []unix.PollFd{{Fd: int32(c), Events: unix.POLLIN}}
					if n, _ := unix.Poll(pfd, int(time.Until(deadline)/time.Millisecond)+1); n > 0 {
						break
					}
				}
				n, err := unix.Read(c, make([]byte, 1))
				if !(n == 0 && err == nil) && !errors.Is(err, unix.ECONNRESET) {
					t.Fatalf("client %d: read = %d, %v: its connection was not closed", i, n, err)
				}
			}
		})
	}
}

func sockaddrKey(sa unix.Sockaddr) string {
	if a, ok := sa.(*unix.SockaddrInet4); ok {
		return fmt.Sprintf("%v:%d", a.Addr, a.Port)
	}
	return ""
}
