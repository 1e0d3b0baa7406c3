package reactor_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/oneshot-io/oneshot/reactor"
)

// ExampleReactor_NetListen serves net/http on the reactor, and calls it
// with a client that dials through the reactor too.
func ExampleReactor_NetListen() {
	r, err := reactor.New(reactor.Config{})
	if err != nil {
		panic(err)
	}
	defer r.Close()

	ln, err := r.NetListen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "hello, %s", req.URL.Query().Get("name"))
	})}
	go srv.Serve(ln)
	defer srv.Close()

	tr := &http.Transport{DialContext: r.DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + ln.Addr().String() + "/?name=reactor")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, string(body))
	// Output: 200 OK hello, reactor
}

// ExampleReactor_DialContext opens a client connection parked on the
// reactor, here to a standard library echo server.
func ExampleReactor_DialContext() {
	r, err := reactor.New(reactor.Config{})
	if err != nil {
		panic(err)
	}
	defer r.Close()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := r.DialContext(ctx, "tcp", l.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	c.(*reactor.NetConn).CloseWrite() // the echo server sees EOF and closes
	b, err := io.ReadAll(c)
	fmt.Println(string(b), err)
	// Output: ping <nil>
}

// ExampleReactor_FileListener serves net/http on a listening socket that
// systemd passed under socket activation (LISTEN_FDS, first fd 3).
func ExampleReactor_FileListener() {
	if n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS")); n < 1 {
		return // not socket-activated
	}
	r, err := reactor.New(reactor.Config{})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	f := os.NewFile(3, "listen-fd-3")
	ln, err := r.FileListener(f)
	f.Close() // the listener holds its own copy
	if err != nil {
		panic(err)
	}
	http.Serve(ln, http.FileServer(http.Dir(".")))
}
