// Command echod is an RFC 862 echo server over TCP, Unix stream sockets and
// UDP, built on the oneshot reactor: io_uring one-shot polls where the
// kernel and seccomp allow them, epoll otherwise.
//
// It runs in the foreground and logs to stderr with zap; the first line at
// info level says where it listens:
//
//	{"level":"info","msg":"listening","addr":["127.0.0.1:7007"],"backend":"uring",...}
//
// SIGTERM or SIGINT stops it gracefully: it stops accepting, lets every
// connection finish echoing what it already received, closes them and exits
// 0; a second signal exits at once. Run `echod --help` for the flags.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Two slots: the graceful request and the impatient one after it must
	// both be seen even if run is busy when they arrive.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, signals))
}
