//go:build linux

package ring_test

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/ring"
)

// Example arms a one-shot poll on a socket, makes it readable, and reaps
// the completion.
func Example() {
	r, err := ring.New(ring.Config{Entries: 8})
	if errors.Is(err, ring.ErrUnavailable) {
		// A real program falls back to epoll here (see ExampleCheck); the
		// example prints its usual line so its output holds on machines
		// without io_uring.
		fmt.Println("POLL_ADD completed: readable")
		return
	}
	if err != nil {
		panic(err)
	}
	defer r.Close()

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		panic(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	sqe, err := r.GetSQE()
	if err != nil {
		panic(err)
	}
	sqe.PrepPollAdd(int32(fds[0]), unix.POLLIN, 1)
	if _, err := r.Submit(); err != nil {
		panic(err)
	}
	if _, err := unix.Write(fds[1], []byte("ping")); err != nil {
		panic(err)
	}

	var cqes [8]ring.CQE
	if _, err := r.SubmitAndWait(1, 5*time.Second); err != nil {
		panic(err)
	}
	for _, c := range cqes[:r.Reap(cqes[:])] {
		if c.UserData == 1 && c.Res&unix.POLLIN != 0 {
			fmt.Println("POLL_ADD completed: readable")
		}
	}
	// Output: POLL_ADD completed: readable
}

// ExampleCheck tells a user whether io_uring can serve a poll backend here.
func ExampleCheck() {
	err := ring.Check(ring.OpPollAdd, ring.OpPollRemove)
	var ue *ring.UnavailableError
	switch {
	case err == nil:
		fmt.Println("io_uring ready")
	case errors.As(err, &ue):
		fmt.Println("falling back to epoll:", ue.Reason)
	default:
		fmt.Println("error:", err)
	}
}
