package reactor_test

import (
	"context"
	"fmt"
	"os"

	"github.com/oneshot-io/oneshot/reactor"
)

// printer prints what its Conn receives.
type printer struct{ done chan struct{} }

func (printer) OnOpen(*reactor.Conn)                 {}
func (printer) OnData(_ *reactor.Conn, b []byte)     { fmt.Printf("%s", b) }
func (p printer) OnClose(_ *reactor.Conn, err error) { close(p.done) }

// Dial opens a client connection served by a Handler, as a Listener serves
// an accepted one: here to an echo server on the same reactor.
func ExampleReactor_Dial() {
	r, err := reactor.New(reactor.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	ln, err := r.Listen("tcp", "127.0.0.1:0", &echo{}, reactor.ListenConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()

	p := printer{done: make(chan struct{})}
	c, err := r.Dial(context.Background(), "tcp", ln.Addr().String(), p, reactor.ListenConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	c.Write([]byte("hello through Dial\n"))
	c.CloseWrite() // the echo server flushes and closes at our EOF
	<-p.done
	// Output: hello through Dial
}

// ListenFile serves a listening socket the process inherited, as systemd
// passes them under socket activation (fd 3 onwards).
func ExampleReactor_ListenFile() {
	r, err := reactor.New(reactor.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	ln, err := r.ListenFile(os.NewFile(3, "systemd socket"), &echo{}, reactor.ListenConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	fmt.Println("serving", ln.Addr())
}
