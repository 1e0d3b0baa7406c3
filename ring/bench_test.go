//go:build linux

package ring_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/ring"
)

// benchFlags are the ring setups each benchmark compares; bench/c measures
// the same two with liburing.
var benchFlags = []struct {
	name  string
	flags ring.SetupFlags
}{
	{"default", 0},
	{"coop", ring.SetupCoopTaskrun},
	{"single-issuer+defer", ring.SetupSingleIssuer | ring.SetupDeferTaskrun},
}

// threadCPU returns the calling thread's CPU time (user+system). The
// benchmarks run on a locked thread, so the difference of two readings is
// the CPU the measured loop spent, which other processes on a busy machine
// inflate far less than wall time; bench/c reports the same figure.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// benchRing sets up a ring on a locked OS thread (needed by the
// single-issuer setups; kept for all so the setups differ in flags only).
func benchRing(b *testing.B, entries uint32, flags ring.SetupFlags) *ring.Ring {
	b.Helper()
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	r, err := ring.New(ring.Config{Entries: entries, Flags: flags})
	if err != nil {
		b.Skip(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// BenchmarkNop measures submit+reap of NOPs, batch at a time, the same loop
// as bench/c/nop_bench.c: prepare batch NOPs, one io_uring_enter to submit
// them (mode "submit": Submit then Reap, waiting only if some are missing;
// mode "submit-wait": SubmitAndWait(batch) then Reap). ns/nop is the figure
// to compare with C; enters/nop is the syscall count per NOP.
func BenchmarkNop(b *testing.B) {
	for _, fl := range benchFlags {
		for _, batch := range []int{1, 32} {
			for _, mode := range []string{"submit", "submit-wait"} {
				name := fmt.Sprintf("%s/batch=%d/%s", fl.name, batch, mode)
				b.Run(name, func(b *testing.B) { benchNop(b, fl.flags, batch, mode == "submit-wait") })
			}
		}
	}
}

func benchNop(b *testing.B, flags ring.SetupFlags, batch int, wait bool) {
	r := benchRing(b, 64, flags)
	buf := make([]ring.CQE, batch)
	enters := r.Enters()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := threadCPU(b)
	for i := 0; i < b.N; i++ {
		for j := 0; j < batch; j++ {
			s, err := r.GetSQE()
			if err != nil {
				b.Fatal(err)
			}
			s.PrepNop(uint64(j))
		}
		var err error
		if wait {
			_, err = r.SubmitAndWait(uint32(batch), -1)
		} else {
			_, err = r.Submit()
		}
		if err != nil {
			b.Fatal(err)
		}
		for n := r.Reap(buf); n < batch; n += r.Reap(buf[n:]) {
			if _, err := r.SubmitAndWait(uint32(batch-n), -1); err != nil {
				b.Fatal(err)
			}
		}
	}
	cpu := threadCPU(b) - cpu0
	b.StopTimer()
	nops := float64(b.N) * float64(batch)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/nops, "ns/nop")
	b.ReportMetric(float64(cpu.Nanoseconds())/nops, "cpu-ns/nop")
	b.ReportMetric(float64(r.Enters()-enters)/nops, "enters/nop")
}

// BenchmarkPollCycle measures one readiness round trip on a socketpair:
// arm a one-shot POLL_ADD, the peer writes a byte, wait and reap the
// completion, read the byte. The epoll-oneshot case is the same cycle with
// EPOLLONESHOT re-armed by epoll_ctl, measured in the same run as a peer.
func BenchmarkPollCycle(b *testing.B) {
	for _, fl := range benchFlags {
		b.Run(fl.name, func(b *testing.B) {
			r := benchRing(b, 8, fl.flags)
			a, w := socketpair(b)
			var cqes [1]ring.CQE
			one, rbuf := []byte{1}, make([]byte, 8)
			enters := r.Enters()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := threadCPU(b)
			for i := 0; i < b.N; i++ {
				s, err := r.GetSQE()
				if err != nil {
					b.Fatal(err)
				}
				s.PrepPollAdd(int32(a), unix.POLLIN, uint64(i))
				if _, err := r.Submit(); err != nil {
					b.Fatal(err)
				}
				if _, err := unix.Write(w, one); err != nil {
					b.Fatal(err)
				}
				for r.Reap(cqes[:]) == 0 {
					if _, err := r.SubmitAndWait(1, -1); err != nil {
						b.Fatal(err)
					}
				}
				if cqes[0].Res&unix.POLLIN == 0 {
					b.Fatalf("CQE %+v", cqes[0])
				}
				if _, err := unix.Read(a, rbuf); err != nil {
					b.Fatal(err)
				}
			}
			cpu := threadCPU(b) - cpu0
			b.StopTimer()
			b.ReportMetric(float64(r.Enters()-enters)/float64(b.N), "enters/op")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
	b.Run("epoll-oneshot", func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		a, w := socketpair(b)
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(ep)
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(a)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, a, &ev); err != nil {
			b.Fatal(err)
		}
		var evs [1]unix.EpollEvent
		one, rbuf := []byte{1}, make([]byte, 8)
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := threadCPU(b)
		for i := 0; i < b.N; i++ {
			if i > 0 {
				if err := unix.EpollCtl(ep, unix.EPOLL_CTL_MOD, a, &ev); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := unix.Write(w, one); err != nil {
				b.Fatal(err)
			}
			for {
				n, err := unix.EpollWait(ep, evs[:], -1)
				if err == unix.EINTR {
					continue
				}
				if err != nil || n != 1 {
					b.Fatalf("epoll_wait: %d, %v", n, err)
				}
				break
			}
			if _, err := unix.Read(a, rbuf); err != nil {
				b.Fatal(err)
			}
		}
		cpu := threadCPU(b) - cpu0
		b.StopTimer()
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
}
