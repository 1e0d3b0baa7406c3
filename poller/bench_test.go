package poller_test

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/poller"
)

// Every benchmark runs over configs, so io_uring (per setup) and epoll are
// measured side by side in one run. syscalls/op counts the poller's own
// system calls (io_uring_enter, epoll_ctl, epoll_wait, eventfd reads), not
// the benchmark's reads and writes. cpu-ns/op is the benchmark thread's CPU
// time (user+system, which includes the kernel's poll work done in this
// thread's context), steadier than wall time on a shared machine.

// threadCPU returns the calling thread's CPU time; the benchmarks run on a
// locked thread (openPoller).
func threadCPU(b *testing.B) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return ts.Nano()
}

// BenchmarkArmFire is one readiness round trip on a socketpair: arm, the
// peer writes, Wait returns the Event, the byte is read.
func BenchmarkArmFire(b *testing.B) {
	for _, c := range configs {
		if c.gather {
			continue // a look that waits to gather is not what these time
		}
		b.Run(c.name, func(b *testing.B) {
			p := openPoller(b, c.opts)
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Close(fds[0])
			defer unix.Close(fds[1])
			evs := make([]poller.Event, 8)
			one := []byte{1}
			var tag uint64
			round := func() {
				tag++
				if err := p.Arm(tag, fds[0], poller.In); err != nil {
					b.Fatal(err)
				}
				if _, err := unix.Write(fds[1], one); err != nil {
					b.Fatal(err)
				}
				for {
					n, err := p.Wait(evs, -1)
					if err != nil {
						b.Fatal(err)
					}
					if n == 1 && evs[0].Tag == tag && evs[0].Events == poller.In {
						break
					}
					if n != 0 {
						b.Fatalf("unexpected %v", evs[:n])
					}
				}
				if _, err := unix.Read(fds[0], one); err != nil {
					b.Fatal(err)
				}
			}
			round() // warm up: the poller's per-fd record is made once
			before := p.Stats().Syscalls
			b.ReportAllocs()
			cpu := threadCPU(b)
			for b.Loop() {
				round()
			}
			b.ReportMetric(float64(threadCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(p.Stats().Syscalls-before)/float64(b.N), "syscalls/op")
		})
	}
}

// BenchmarkReady1000 arms 1,000 always-readable eventfds per op and Waits
// until all 1,000 Events are in: the batch a loop sees under load.
func BenchmarkReady1000(b *testing.B) {
	const nfd = 1000
	for _, c := range configs {
		if c.gather {
			continue // a look that waits to gather is not what these time
		}
		b.Run(c.name, func(b *testing.B) {
			p := openPoller(b, c.opts)
			fds := make([]int, nfd)
			for i := range fds {
				fd, err := unix.Eventfd(1, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC) // readable for good
				if err != nil {
					b.Fatal(err)
				}
				defer unix.Close(fd)
				fds[i] = fd
			}
			evs := make([]poller.Event, 1024)
			var tag uint64
			round := func() {
				for _, fd := range fds {
					tag++
					if err := p.Arm(tag, fd, poller.In); err != nil {
						b.Fatal(err)
					}
				}
				for got := 0; got < nfd; {
					n, err := p.Wait(evs, -1)
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
			round() // warm up: the poller's per-fd records and maps grow once
			before := p.Stats().Syscalls
			b.ReportAllocs()
			cpu := threadCPU(b)
			for b.Loop() {
				round()
			}
			events := float64(b.N) * nfd
			b.ReportMetric(float64(threadCPU(b)-cpu)/events, "cpu-ns/event")
			b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(p.Stats().Syscalls-before)/events, "syscalls/event")
		})
	}
}

// BenchmarkBurst1000 arms 1,000 idle eventfds, hands the arms to the kernel,
// then makes all 1,000 ready at once and Waits for every Event: readiness
// that arrives after arming, as on a loaded server. The eventfd writes and
// reads are the benchmark's own, the same for every backend.
func BenchmarkBurst1000(b *testing.B) {
	const nfd = 1000
	for _, c := range configs {
		if c.gather {
			continue // a look that waits to gather is not what these time
		}
		b.Run(c.name, func(b *testing.B) {
			p := openPoller(b, c.opts)
			fds := make([]int, nfd)
			for i := range fds {
				fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
				if err != nil {
					b.Fatal(err)
				}
				defer unix.Close(fd)
				fds[i] = fd
			}
			evs := make([]poller.Event, 1024)
			var one, sink [8]byte
			one[0] = 1
			var tag uint64
			var harvest, turns int64 // poller syscalls and Waits spent collecting the burst
			round := func() {
				for _, fd := range fds {
					tag++
					if err := p.Arm(tag, fd, poller.In); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := p.Wait(evs, 0); err != nil { // the arms reach the kernel
					b.Fatal(err)
				}
				for _, fd := range fds {
					unix.Write(fd, one[:])
				}
				before := p.Stats().Syscalls
				for got := 0; got < nfd; turns++ {
					n, err := p.Wait(evs, -1)
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
				harvest += int64(p.Stats().Syscalls - before)
				for _, fd := range fds {
					unix.Read(fd, sink[:])
				}
			}
			round()
			harvest, turns = 0, 0
			before := p.Stats().Syscalls
			b.ReportAllocs()
			cpu := threadCPU(b)
			for b.Loop() {
				round()
			}
			events := float64(b.N) * nfd
			b.ReportMetric(float64(threadCPU(b)-cpu)/events, "cpu-ns/event")
			b.ReportMetric(float64(p.Stats().Syscalls-before)/events, "syscalls/event")
			b.ReportMetric(float64(harvest)/float64(b.N), "harvest-syscalls/op")
			b.ReportMetric(float64(turns)/float64(b.N), "waits/op")
		})
	}
}
