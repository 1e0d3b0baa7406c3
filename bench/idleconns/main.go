// Command idleconns opens -n TCP connections to -addr, says "ok" on stdout
// once all are connected, and holds them, idle, until its stdin closes. It
// is the client side of scripts/idle-rss.sh, which measures what an idle
// connection costs a server.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7007", "server `host:port`")
	n := flag.Int("n", 10000, "connections to open")
	flag.Parse()
	conns := make([]net.Conn, 0, *n)
	for i := 0; i < *n; i++ {
		c, err := net.DialTimeout("tcp", *addr, 10*time.Second)
		if err != nil {
			fmt.Fprintf(os.Stderr, "idleconns: connection %d: %v\n", i, err)
			os.Exit(1)
		}
		conns = append(conns, c)
	}
	fmt.Println("ok")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}
