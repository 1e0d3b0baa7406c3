package reactor_test

import (
	"context"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

func ExampleReactor_Arm() {
	r, err := reactor.New(reactor.Config{Backend: reactor.BackendEpoll, Loops: 1})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	defer unix.Close(fds[1])

	done := make(chan reactor.Result, 1)
	if _, err := r.Arm(fds[0], reactor.In, func(res reactor.Result) {
		done <- res // runs once, on the loop; must not block
	}); err != nil {
		panic(err)
	}
	unix.Write(fds[1], []byte("ping"))
	fmt.Println("ready:", (<-done).Events)

	q, _ := r.Arm(fds[0], reactor.Pri, func(res reactor.Result) { done <- res })
	fmt.Println("canceled:", q.Cancel(), (<-done).Err)

	r.CloseFd(fds[0]) // completes fds[0]'s requests, then closes it
	// Output:
	// ready: In
	// canceled: true reactor: request canceled
}

func ExampleReactor_Poll() {
	r, err := reactor.New(reactor.Config{Backend: reactor.BackendEpoll, Loops: 1})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	go unix.Write(fds[1], []byte("ping"))
	ev, err := r.Poll(context.Background(), fds[0], reactor.In)
	fmt.Println(ev, err)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = r.Poll(ctx, fds[0], reactor.Pri)
	fmt.Println(err)
	// Output:
	// In <nil>
	// context canceled
}

// upper is a tiny Handler: it answers each read with its upper case.
type upper struct{}

func (upper) OnOpen(c *reactor.Conn) {}
func (upper) OnData(c *reactor.Conn, b []byte) {
	out := make([]byte, len(b))
	for i, x := range b {
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		out[i] = x
	}
	c.Write(out) // copies; never blocks
}
func (upper) OnClose(c *reactor.Conn, err error) {}

// Example_server runs a tiny server with the connection layer.
func Example_server() {
	r, err := reactor.New(reactor.Config{})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	ln, err := r.Listen("tcp", "127.0.0.1:0", upper{}, reactor.ListenConfig{MaxPending: 64 << 10})
	if err != nil {
		panic(err)
	}
	defer ln.Shutdown(context.Background())

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	c.Write([]byte("hello, oneshot"))
	c.(*net.TCPConn).CloseWrite() // the server flushes, then closes
	b, _ := io.ReadAll(c)
	fmt.Println(string(b))
	// Output: HELLO, ONESHOT
}
