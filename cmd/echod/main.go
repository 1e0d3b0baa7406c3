//go:build linux

// Command echod is an RFC 862 echo server over TCP, Unix stream sockets and
// UDP, built on the oneshot reactor: io_uring one-shot polls where the
// kernel and seccomp allow them, epoll otherwise.
//
// It runs in the foreground and logs to stderr with zap; the first line at
// info level says where it listens:
//
//	{"level":"info","msg":"listening","addr":["127.0.0.1:7007"],"backend":"uring",...}
//
// SIGTERM, SIGINT or SIGHUP stops it gracefully: it stops accepting, lets
// every connection finish echoing what it already received, closes them and
// exits 0; a second signal exits at once. Started with SIGHUP ignored
// (nohup), it leaves SIGHUP ignored. SIGPIPE is ignored: a log line that
// cannot be written (stderr a pipe whose reader is gone) is dropped and
// counted in /metrics, and echod goes on serving. Run `echod --help` for
// the flags.
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
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, notifyStop(signals)))
}

// notifyStop sends the signals that stop echod to c and returns it.
//
// SIGHUP is among them unless echod was started with it ignored: Notify
// would install a handler and undo what nohup asked for.
//
// SIGPIPE is ignored. Go's runtime kills a program whose write to a broken
// pipe on fd 1 or 2 fails, unless SIGPIPE is ignored or notified (see
// os/signal, "SIGPIPE"); a daemon must not die, undrained and leaving its
// socket files behind, because whoever read its log went away. Ignoring it
// (SIG_IGN) rather than notifying also spares the kernel delivering a
// signal for every write to a reset socket. integration's
// TestClosedLogPipe checks that echod survives.
func notifyStop(c chan os.Signal) <-chan os.Signal {
	stop := []os.Signal{syscall.SIGTERM, syscall.SIGINT}
	if !signal.Ignored(syscall.SIGHUP) {
		stop = append(stop, syscall.SIGHUP)
	}
	signal.Notify(c, stop...)
	signal.Ignore(syscall.SIGPIPE)
	return c
}
