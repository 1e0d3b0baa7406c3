//go:build linux

package reactor_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oneshot-io/oneshot/reactor"
	"github.com/oneshot-io/oneshot/ring"
)

// newKernelWaitReactor starts a KernelWait reactor on b (see newReactor).
func newKernelWaitReactor(t *testing.T, b backend, loops int) *reactor.Reactor {
	t.Helper()
	return startReactor(t, b, reactor.Config{Backend: b.kind, Loops: loops, KernelWait: true})
}

// gcWithin runs a garbage collection, whose stop-the-world must take the P
// of every loop, even one waiting in the kernel holding it.
func gcWithin(t *testing.T, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		runtime.GC()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("runtime.GC did not return within %v: a loop holding its P in the kernel kept the world from stopping", d)
	}
}

// echoRounds makes n round trips of random sizes on c, checking each echo.
func echoRounds(t *testing.T, c net.Conn, n int, rnd *rand.Rand) {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	for range n {
		msg := make([]byte, 1+rnd.IntN(4096))
		for i := range msg {
			msg[i] = byte(rnd.Uint32())
		}
		if _, err := c.Write(msg); err != nil {
			t.Error(err)
			return
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Errorf("echo of %d bytes: %v (equal %v)", len(msg), err, bytes.Equal(got, msg))
			return
		}
	}
}

// TestKernelWait: loops that wait in the kernel (Config.KernelWait) echo
// every byte, each on its own OS thread, on io_uring with a single-issuer
// ring; a garbage collection's stop-the-world gets their Ps while they
// serve and while they wait holding them; and Close ends them.
func TestKernelWait(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			r := newKernelWaitReactor(t, b, 2)
			if b.kind == reactor.BackendUring && singleIssuerWorks() && !strings.Contains(r.BackendReason(), "DEFER_TASKRUN") {
				t.Errorf("BackendReason %q: a KernelWait loop's ring is not SINGLE_ISSUER|DEFER_TASKRUN where the kernel has it", r.BackendReason())
			}
			h := &tidEcho{tids: map[*reactor.Conn]map[int]bool{}}
			ln, err := r.Listen("tcp", "127.0.0.1:0", h, reactor.ListenConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()

			var clients sync.WaitGroup
			for i := range 8 {
				c := dial(t, ln)
				clients.Add(1)
				go func() {
					defer clients.Done()
					echoRounds(t, c, 100, rand.New(rand.NewPCG(uint64(i), 1)))
				}()
			}
			for range 5 {
				gcWithin(t, 10*time.Second) // while the loops serve
			}
			clients.Wait()

			// Right after a message the loop waits holding its P.
			c := dial(t, ln)
			rnd := rand.New(rand.NewPCG(99, 1))
			for range 10 {
				echoRounds(t, c, 1, rnd)
				gcWithin(t, 10*time.Second)
			}

			h.mu.Lock()
			defer h.mu.Unlock()
			for conn, tids := range h.tids {
				if len(tids) != 1 {
					t.Errorf("a Conn's handler calls ran on %d OS threads, want its loop's one (%v)", len(tids), conn)
				}
			}
		})
	}
}

// TestKernelWaitGivesThePUpWhenIdle: a KernelWait loop holds its P only
// while messages keep coming. Once idle it waits through the ordinary
// system-call entry, which the runtime sees as a goroutine in a system
// call, so the rest of the program gets the P.
func TestKernelWaitGivesThePUpWhenIdle(t *testing.T) {
	for _, b := range backends {
		t.Run(name(b), func(t *testing.T) {
			before := notInGo()
			r := newKernelWaitReactor(t, b, 1)
			ln, err := r.Listen("tcp", "127.0.0.1:0", &tidEcho{tids: map[*reactor.Conn]map[int]bool{}}, reactor.ListenConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c := dial(t, ln)
			echoRounds(t, c, 50, rand.New(rand.NewPCG(7, 1)))
			// The held wait after the last message ends at the runtime's
			// preemption signal (about 10-20 ms), and the loop then waits
			// giving the P up.
			waitFor(t, 5*time.Second, "the idle loop to wait in a system call, giving its P up", func() bool {
				return notInGo() > before
			})
			echoRounds(t, c, 50, rand.New(rand.NewPCG(8, 1))) // and it serves again
		})
	}
}

// notInGo is the runtime's count of goroutines in a system call.
func notInGo() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines/not-in-go:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		panic("runtime/metrics: no " + s[0].Name)
	}
	return s[0].Value.Uint64()
}

// singleIssuerWorks reports whether this kernel sets up a SINGLE_ISSUER|
// DEFER_TASKRUN ring.
func singleIssuerWorks() bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rg, err := ring.New(ring.Config{Flags: ring.SetupSingleIssuer | ring.SetupDeferTaskrun})
	if err != nil {
		return false
	}
	rg.Close()
	return true
}

// TestKernelWaitGathers: under load a KernelWait loop on io_uring gathers
// its batches (Stats.Gathered rises) and still echoes every byte; with more
// loops than Ps none does (a gathering wait keeps the P, and loops sharing
// Ps would wait for each other). (Epoll has no gathering to count: its
// Gather does nothing, and TestGather's epoll row shows its looks return at
// once.)
func TestKernelWaitGathers(t *testing.T) {
	for _, b := range backends {
		if b.kind != reactor.BackendUring {
			continue
		}
		for _, tc := range []struct {
			name         string
			loops, procs int // procs 0: GOMAXPROCS as it is (at least 1 loop's worth)
		}{{"loops<=Ps", 1, 0}, {"loops>Ps", 2, 1}} {
			t.Run(name(b)+"/"+tc.name, func(t *testing.T) {
				if tc.procs > 0 {
					defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(tc.procs))
				}
				r := newKernelWaitReactor(t, b, tc.loops)
				ln, err := r.Listen("tcp", "127.0.0.1:0", &echo{}, reactor.ListenConfig{})
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				conns := make([]net.Conn, 8)
				for i := range conns {
					conns[i] = dial(t, ln)
				}
				want := tc.procs == 0
				// Rounds of 8 clients at once until a gather is seen (or,
				// where none may be, for three rounds): a turn that serves
				// two Events is all it takes, and 8 clients make many.
				deadline := time.Now().Add(10 * time.Second)
				for round := 0; ; round++ {
					var wg sync.WaitGroup
					for i, c := range conns {
						wg.Go(func() { echoRounds(t, c, 50, rand.New(rand.NewPCG(uint64(round), uint64(i)))) })
					}
					wg.Wait()
					g := r.Stats().Gathered
					if t.Failed() || (want && g > 0) || (!want && round == 2) || time.Now().After(deadline) {
						break
					}
				}
				switch g := r.Stats().Gathered; {
				case want && g == 0:
					t.Errorf("no look gathered a batch in %v of 8 echoing clients", 10*time.Second)
				case !want && g != 0:
					t.Errorf("%d looks gathered a batch: want none here", g)
				}
			})
		}
	}
}
