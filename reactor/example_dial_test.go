package reactor_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

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

// NetConfig.Control sets socket options that must come before the bind,
// as net.ListenConfig's does: here SO_REUSEPORT, so that two listeners (two
// processes, in a graceful restart) share one port; LocalAddr picks the
// address a dial comes from.
func ExampleNetConfig_control() {
	r, err := reactor.New(reactor.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	cfg := reactor.NetConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	a, err := r.NetListenWith("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	b, err := r.NetListenWith("tcp", a.Addr().String(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	fmt.Println("two listeners on one port:", a.Addr().String() == b.Addr().String())

	c, err := r.DialWith(context.Background(), "tcp", a.Addr().String(),
		reactor.NetConfig{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println("dialed from", c.LocalAddr().(*net.TCPAddr).IP)
	// Output:
	// two listeners on one port: true
	// dialed from 127.0.0.3
}
