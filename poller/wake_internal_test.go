package poller

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestAckOrder lands a Wake inside the owner's ack, deterministically, and
// proves the next Wake still makes the eventfd readable. With ack's steps
// the other way round (clear pending, then drain) the racing Wake's write is
// drained with pending left set, and every later Wake is swallowed.
func TestAckOrder(t *testing.T) {
	w, err := newWaker()
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if err := w.wake(); err != nil {
		t.Fatal(err)
	}
	w.inAck = func() {
		if err := w.wake(); err != nil {
			t.Fatal(err)
		}
	}
	w.ack() // the owner's Wait saw the first Wake and is returning
	w.inAck = nil
	if err := w.wake(); err != nil { // the owner has gone back to sleep
		t.Fatal(err)
	}
	pfd := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 0); err != nil || n != 1 {
		t.Fatalf("after a Wake the eventfd is not readable (poll = %d, %v): the Wake was swallowed", n, err)
	}
}
