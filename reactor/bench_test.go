package reactor_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// benchBackends are the rows of every side-by-side benchmark: the reactor
// on each backend, and "netpoller", Go's own runtime poller doing the same
// wait.
var benchBackends = []string{"epoll", "uring", "netpoller"}

func benchReactor(b *testing.B, kind string) *reactor.Reactor {
	b.Helper()
	return benchReactorLoops(b, kind, 1)
}

func benchReactorLoops(b *testing.B, kind string, loops int) *reactor.Reactor {
	b.Helper()
	r, err := reactor.New(reactor.Config{Backend: reactor.Backend(kind), Loops: loops})
	if err != nil {
		if errors.Is(err, reactor.ErrUnavailable) {
			b.Skipf("io_uring unavailable here: %v", err)
		}
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// marker is where a benchmark's measured phase began.
type marker struct {
	st   reactor.Stats
	vcsw int64
}

func mark(r *reactor.Reactor) marker { return marker{r.Stats(), voluntarySwitches()} }

// voluntarySwitches counts the times this process's threads blocked in the
// kernel: each is an OS thread put to sleep and woken again, the hand-off a
// loop inside Go's scheduler avoids. Unlike ns/op it barely moves when
// other programs load the machine.
func voluntarySwitches() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw
}

// report adds the per-op kernel enters and wakeups of r's loops, and the
// process's voluntary context switches.
func report(b *testing.B, r *reactor.Reactor, before marker) {
	s := r.Stats()
	b.ReportMetric(float64(s.KernelEnters-before.st.KernelEnters)/float64(b.N), "enters/op")
	b.ReportMetric(float64(s.Wakeups-before.st.Wakeups)/float64(b.N), "wakeups/op")
	b.ReportMetric(float64(voluntarySwitches()-before.vcsw)/float64(b.N), "vcsw/op")
}

// BenchmarkArmCycle: one readiness round trip per op on a socketpair — arm
// In, the peer writes a byte, the callback reads it and signals. The
// netpoller row is a goroutine blocked in net.Conn.Read woken by the same
// write.
func BenchmarkArmCycle(b *testing.B) {
	for _, kind := range benchBackends {
		b.Run(kind, func(b *testing.B) {
			if kind == "netpoller" {
				netpollerCycle(b)
				return
			}
			a, p := pair(b)
			one := []byte{1}
			done := make(chan struct{}, 1)
			r := benchReactor(b, kind)
			var buf [1]byte
			cb := func(res reactor.Result) {
				unix.Read(a, buf[:])
				done <- struct{}{}
			}
			var q reactor.Request
			b.ReportAllocs()
			before := mark(r)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := r.ArmRequest(&q, a, reactor.In, cb); err != nil {
					b.Fatal(err)
				}
				unix.Write(p, one)
				<-done
			}
			b.StopTimer()
			report(b, r, before)
		})
	}
}

// BenchmarkRearmInCallback is BenchmarkArmCycle with the request re-armed
// from inside its callback, the way a server re-arms: the arm takes the
// loop's inbox without a wake-up and rides the next wait's batch.
func BenchmarkRearmInCallback(b *testing.B) {
	for _, kind := range []string{"epoll", "uring"} {
		b.Run(kind, func(b *testing.B) {
			a, p := pair(b)
			r := benchReactor(b, kind)
			done := make(chan struct{}, 1)
			var q reactor.Request
			var buf [1]byte
			var cb func(reactor.Result)
			cb = func(res reactor.Result) {
				unix.Read(a, buf[:])
				if res.Err == nil {
					if err := r.ArmRequest(&q, a, reactor.In, cb); err != nil {
						b.Error(err)
					}
				}
				done <- struct{}{}
			}
			if err := r.ArmRequest(&q, a, reactor.In, cb); err != nil {
				b.Fatal(err)
			}
			one := []byte{1}
			b.ReportAllocs()
			before := mark(r)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				unix.Write(p, one)
				<-done
			}
			b.StopTimer()
			report(b, r, before)
			q.Cancel()
		})
	}
}

// BenchmarkPollCycle: the blocking API's round trip — a goroutine in Poll
// woken by the peer's write, then reading the byte — against the same
// goroutine blocked in net.Conn.Read.
func BenchmarkPollCycle(b *testing.B) {
	for _, kind := range benchBackends {
		b.Run(kind, func(b *testing.B) {
			if kind == "netpoller" {
				netpollerCycle(b)
				return
			}
			a, p := pair(b)
			one := []byte{1}
			done := make(chan struct{}, 1)
			r := benchReactor(b, kind)
			exited := make(chan struct{})
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				defer close(exited)
				var buf [1]byte
				for {
					if _, err := r.Poll(ctx, a, reactor.In); err != nil {
						return
					}
					unix.Read(a, buf[:])
					done <- struct{}{}
				}
			}()
			b.ReportAllocs()
			before := mark(r)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				unix.Write(p, one)
				<-done
			}
			b.StopTimer()
			report(b, r, before)
			cancel()
			<-exited
		})
	}
}

// BenchmarkArmBatch: 256 socketpairs armed, all made ready at once, all
// callbacks awaited: where io_uring's batching (arms queued as SQEs and
// submitted with the wait) should show as enters/op well under one.
func BenchmarkArmBatch(b *testing.B) {
	const n = 256
	for _, kind := range []string{"epoll", "uring"} {
		b.Run(kind, func(b *testing.B) {
			r := benchReactor(b, kind)
			as, ps := make([]int, n), make([]int, n)
			for i := range as {
				as[i], ps[i] = socketpair(b)
			}
			defer func() {
				for i := range as {
					unix.Close(as[i])
					unix.Close(ps[i])
				}
			}()
			done := make(chan struct{}, n)
			cbs := make([]func(reactor.Result), n)
			for i := range cbs {
				fd := as[i]
				cbs[i] = func(reactor.Result) {
					var buf [1]byte
					unix.Read(fd, buf[:])
					done <- struct{}{}
				}
			}
			qs := make([]reactor.Request, n)
			one := []byte{1}
			b.ReportAllocs()
			before := mark(r)
			b.ResetTimer()
			for i := 0; i < b.N; i += n {
				for j := range as {
					if err := r.ArmRequest(&qs[j], as[j], reactor.In, cbs[j]); err != nil {
						b.Fatal(err)
					}
				}
				for j := range ps {
					unix.Write(ps[j], one)
				}
				for range as {
					<-done
				}
			}
			b.StopTimer()
			report(b, r, before)
		})
	}
}

// BenchmarkEcho: 64-byte ping-pong through the connection layer against a
// goroutine-per-connection net.Conn echo server, over loopback TCP.
func BenchmarkEcho(b *testing.B) {
	for _, kind := range benchBackends {
		b.Run(kind, func(b *testing.B) {
			addr, r := echoServer(b, kind, 1)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg := make([]byte, 64)
			got := make([]byte, 64)
			b.ReportAllocs()
			var before marker
			if r != nil {
				before = mark(r)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.Write(msg)
				for n := 0; n < len(got); {
					m, err := c.Read(got[n:])
					if err != nil {
						b.Fatal(err)
					}
					n += m
				}
			}
			b.StopTimer()
			if r != nil {
				report(b, r, before)
			}
		})
	}
}

// BenchmarkEchoParallel: 64-byte ping-pong on 32 connections at once
// (2 loops), where a busy loop reaps many readinesses per wait and io_uring
// batches the re-arms: enters/op is the polling syscalls per echoed message.
func BenchmarkEchoParallel(b *testing.B) {
	for _, kind := range benchBackends {
		b.Run(kind, func(b *testing.B) {
			addr, r := echoServer(b, kind, 2)
			var before marker
			if r != nil {
				before = mark(r)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism(16) // 32 clients on 2 Ps
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				msg := make([]byte, 64)
				got := make([]byte, 64)
				for pb.Next() {
					c.Write(msg)
					for n := 0; n < len(got); {
						m, err := c.Read(got[n:])
						if err != nil {
							b.Error(err)
							return
						}
						n += m
					}
				}
			})
			b.StopTimer()
			if r != nil {
				report(b, r, before)
			}
		})
	}
}

// BenchmarkAccept compares the listener strategies on 2 loops: one socket
// accepted on one loop handing Conns to the loops in turn (handoff) against
// one SO_REUSEPORT socket per loop (reuseport). One op: connect, one 64-byte
// echo, close — 4 clients at once, so both loops have work.
func BenchmarkAccept(b *testing.B) {
	for _, strategy := range []string{"handoff", "reuseport"} {
		for _, kind := range []string{"epoll", "uring"} {
			b.Run(strategy+"/"+kind, func(b *testing.B) {
				r, err := reactor.New(reactor.Config{Backend: reactor.Backend(kind), Loops: 2})
				if err != nil {
					if errors.Is(err, reactor.ErrUnavailable) {
						b.Skipf("io_uring unavailable here: %v", err)
					}
					b.Fatal(err)
				}
				defer r.Close()
				ln, err := r.Listen("tcp", "127.0.0.1:0", &echo{}, reactor.ListenConfig{ReusePort: strategy == "reuseport"})
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				port := ln.Addr().(*net.TCPAddr).Port
				b.ResetTimer()
				b.SetParallelism(2) // 2 × GOMAXPROCS clients
				b.RunParallel(func(pb *testing.PB) {
					msg := make([]byte, 64)
					for pb.Next() {
						fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
						if err != nil {
							b.Error(err)
							return
						}
						if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
							b.Error(err)
							unix.Close(fd)
							return
						}
						unix.Write(fd, msg)
						for n := 0; n < len(msg); {
							m, err := unix.Read(fd, msg[n:])
							if err != nil || m == 0 {
								b.Error("echo:", err)
								break
							}
							n += m
						}
						unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
						unix.Close(fd) // RST: no TIME_WAIT pile-up on the client ports
					}
				})
				b.StopTimer()
				s := ln.Stats()
				b.ReportMetric(float64(s.Accepted)/float64(b.N), "accepts/op")
			})
		}
	}
}

// BenchmarkIdleConnMemory opens 10,000 connections that stay idle and
// reports the Go heap each costs the server (goal: under 2 KiB). The client
// ends live in a child process (the fd limit here is 20,000), so the
// parent's heap holds only the server side. The figure comes from one
// measurement; b.N only repeats it.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 10000
	for _, kind := range []string{"epoll", "uring"} {
		b.Run(kind, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r := benchReactor(b, kind)
				h := &connLog{}
				ln, err := r.Listen("tcp", "127.0.0.1:0", h, reactor.ListenConfig{Backlog: 4096})
				if err != nil {
					b.Fatal(err)
				}
				port := ln.Addr().(*net.TCPAddr).Port
				runtime.GC()
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				child := exec.Command(os.Args[0], "-test.run=^$")
				child.Env = append(os.Environ(), fmt.Sprintf("%s=%d:%d", dialerEnv, port, n))
				child.Stderr = os.Stderr
				stdin, _ := child.StdinPipe()
				stdout, _ := child.StdoutPipe()
				if err := child.Start(); err != nil {
					b.Fatal(err)
				}
				line, _ := bufio.NewReader(stdout).ReadString('\n')
				if line != "ok\n" {
					stdin.Close()
					child.Wait()
					b.Fatalf("dialer child: %q", line)
				}
				deadline := time.Now().Add(30 * time.Second)
				for h.opens.Load() < n && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if h.opens.Load() < n {
					b.Fatalf("only %d of %d connections opened", h.opens.Load(), n)
				}
				runtime.GC()
				runtime.ReadMemStats(&m1)
				b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/n, "heapB/conn")
				b.ReportMetric(float64(int64(m1.Mallocs)-int64(m0.Mallocs))/n, "mallocs/conn")
				b.ReportMetric(float64(int64(m1.TotalAlloc)-int64(m0.TotalAlloc))/n, "allocB/conn")
				stdin.Close()
				child.Wait()
				deadline = time.Now().Add(30 * time.Second)
				for h.closes.Load() < n && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				ln.Close()
				r.Close()
			}
		})
	}
}

// BenchmarkIdleArmMemory: 10,000 eventfds with a request armed on each;
// the Go heap per outstanding request.
func BenchmarkIdleArmMemory(b *testing.B) {
	const n = 10000
	for _, kind := range []string{"epoll", "uring"} {
		b.Run(kind, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r := benchReactor(b, kind)
				fds := make([]int, n)
				for j := range fds {
					fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
					if err != nil {
						b.Fatal(err)
					}
					fds[j] = fd
				}
				cb := func(reactor.Result) {}
				qs := make([]reactor.Request, n)
				runtime.GC()
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				for j, fd := range fds {
					if err := r.ArmRequest(&qs[j], fd, reactor.In, cb); err != nil {
						b.Fatal(err)
					}
				}
				for r.Stats().Outstanding < n || r.Stats().Armed < n {
					runtime.Gosched()
				}
				runtime.GC()
				runtime.ReadMemStats(&m1)
				b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/n, "heapB/req")
				r.Close()
				for _, fd := range fds {
					unix.Close(fd)
				}
			}
		})
	}
}

// echoServer starts the echo server of the Echo benchmarks and returns its
// address: for "netpoller" a goroutine per net.Conn, else the connection
// layer on a reactor of kind with loops loops (returned, for its Stats).
// Both close at cleanup.
func echoServer(b *testing.B, kind string, loops int) (string, *reactor.Reactor) {
	b.Helper()
	if kind == "netpoller" {
		gl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { gl.Close() })
		go func() {
			for {
				c, err := gl.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 64<<10)
					for {
						n, err := c.Read(buf)
						if err != nil {
							return
						}
						c.Write(buf[:n])
					}
				}()
			}
		}()
		return gl.Addr().String(), nil
	}
	r := benchReactorLoops(b, kind, loops)
	ln, err := r.Listen("tcp", "127.0.0.1:0", &echo{}, reactor.ListenConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), r
}

// netpollerCycle is the netpoller row of the cycle benchmarks: a goroutine
// blocked in net.Conn.Read on a socketpair, woken by the peer's 1-byte
// write, per op.
func netpollerCycle(b *testing.B) {
	a, p := socketpair(b)
	defer unix.Close(p)
	c := fileConn(b, a)
	defer c.Close()
	done := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 1)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			done <- struct{}{}
		}
	}()
	one := []byte{1}
	b.ReportAllocs()
	vcsw := voluntarySwitches()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		unix.Write(p, one)
		<-done
	}
	b.StopTimer()
	b.ReportMetric(float64(voluntarySwitches()-vcsw)/float64(b.N), "vcsw/op")
}

// fileConn wraps fd in a net.Conn served by Go's netpoller (it takes fd).
func fileConn(b *testing.B, fd int) net.Conn {
	f := os.NewFile(uintptr(fd), "socketpair")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	return c
}
