package poller_test

import (
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
)

// The owner loop in miniature: arm, make the fd ready, Wait for the one
// Event.
func ExampleOpen() {
	runtime.LockOSThread() // a single-issuer io_uring stays on one thread
	defer runtime.UnlockOSThread()

	p, sel, err := poller.Open(poller.Options{Backend: poller.Epoll})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	fmt.Println(sel)

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	const tag = 42
	if err := p.Arm(tag, fds[0], poller.In); err != nil {
		fmt.Println(err)
		return
	}
	unix.Write(fds[1], []byte("hi"))

	evs := make([]poller.Event, 16)
	n, err := p.Wait(evs, time.Second)
	fmt.Println(n, err, evs[0].Tag, evs[0].Events == poller.In, evs[0].Err())
	// Output:
	// epoll: epoll requested
	// 1 <nil> 42 true <nil>
}

// Disarm races readiness: the tag's one Event says which won.
func ExamplePoller_Disarm() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, _, err := poller.Open(poller.Options{Backend: poller.Epoll})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	p.Arm(7, fds[0], poller.In)
	fmt.Println(p.Disarm(7), p.Disarm(7)) // the second finds nothing armed
	evs := make([]poller.Event, 1)
	n, _ := p.Wait(evs, time.Second)
	fmt.Println(n, evs[0])
	// Output:
	// true false
	// 1 {tag 0x7 canceled}
}

// Closing an fd that has polls armed: Forget first, then close. Each tag
// still gets its one Event, and the number may be reused at once.
func ExamplePoller_Forget() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, _, err := poller.Open(poller.Options{Backend: poller.Epoll})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	defer unix.Close(fds[1])

	p.Arm(1, fds[0], poller.In)
	p.Arm(2, fds[0], poller.In|poller.RdHup)
	p.Forget(fds[0])
	unix.Close(fds[0])

	evs := make([]poller.Event, 4)
	n, _ := p.Wait(evs, time.Second)
	for _, ev := range evs[:n] {
		fmt.Println(ev)
	}
	fmt.Println("armed:", p.Stats().Armed)
	// Output:
	// {tag 0x1 canceled}
	// {tag 0x2 canceled}
	// armed: 0
}
