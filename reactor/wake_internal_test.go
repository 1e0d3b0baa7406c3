package reactor

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWakeHammered is white-box: it hammers loop.wake from another goroutine
// while the loop keeps waking and draining, then checks the loop can still
// be woken. A coalescing flag cleared before the eventfd is drained (as
// poller.Wake's was) ends up set with nothing left to read, after which
// every wake is swallowed and the request below never completes; with
// wake routed to poller.Wake this test fails within its hammering window.
func TestWakeHammered(t *testing.T) {
	for _, b := range []Backend{BackendEpoll, BackendUring} {
		t.Run(string(b), func(t *testing.T) { testWakeHammered(t, b, false) })
		// A loop waiting in the kernel is woken through the poller's
		// eventfd rather than its netpoller deadline.
		t.Run(string(b)+"/KernelWait", func(t *testing.T) { testWakeHammered(t, b, true) })
	}
}

func testWakeHammered(t *testing.T, b Backend, kernelWait bool) {
	r := reactorWith(t, Config{Backend: b, Loops: 1, KernelWait: kernelWait})
	lost := false // a loop that cannot be woken cannot be closed either
	defer func() {
		if !lost {
			r.Close()
		}
	}()
	l := r.loops[0]
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	for round := 0; round < 3; round++ {
		stop := time.Now().Add(150 * time.Millisecond)
		for time.Now().Before(stop) {
			l.wake()
		}
		got := make(chan Result, 1)
		if _, err := r.Arm(fds[0], Out, func(res Result) { got <- res }); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(2 * time.Second):
			lost = true
			t.Fatalf("round %d: a request on a woken loop never completed: wake-ups are being swallowed", round)
		}
	}
}
