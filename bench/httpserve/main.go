// Command httpserve serves a small net/http response on the reactor's
// NetListen or on the standard library's net.Listen, for
// scripts/http-bench.sh to compare under wrk. It prints "listening on ADDR"
// once ready and serves until SIGINT or SIGTERM.
//
//	httpserve -mode std              # net.Listen
//	httpserve -mode reactor -backend epoll
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/oneshot-io/oneshot/reactor"
)

func main() {
	mode := flag.String("mode", "reactor", "std (net.Listen) or reactor (Reactor.NetListen)")
	backend := flag.String("backend", "auto", "reactor backend: auto, uring or epoll")
	loops := flag.Int("loops", 0, "reactor event loops (0: GOMAXPROCS)")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "httpserve:", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "httpserve:", err)
			os.Exit(2)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if err := run(*mode, reactor.Backend(*backend), *loops, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "httpserve:", err)
		os.Exit(1) //nolint:gocritic // the profile of a failed run is not wanted
	}
}

var body = []byte("Hello, World!\n")

func run(mode string, backend reactor.Backend, loops int, addr string) error {
	var ln net.Listener
	var err error
	switch mode {
	case "std":
		ln, err = net.Listen("tcp", addr)
	case "reactor":
		var r *reactor.Reactor
		r, err = reactor.New(reactor.Config{Backend: backend, Loops: loops})
		if err != nil {
			return err
		}
		defer r.Close()
		fmt.Fprintf(os.Stderr, "backend %s (%s)\n", r.Backend(), r.BackendReason())
		ln, err = r.NetListen("tcp", addr)
	default:
		return fmt.Errorf("unknown -mode %q (std or reactor)", mode)
	}
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
