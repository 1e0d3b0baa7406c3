package reactor_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oneshot-io/oneshot/reactor"
)

// stormReq records what happened to one accepted Arm request.
type stormReq struct {
	q           *reactor.Request
	completions atomic.Int32
	err         atomic.Pointer[error]
	cancelTrue  atomic.Int32
	cancelFalse atomic.Int32
}

// complete is sr's callback: it counts every completion (a second one is
// the bug the storm looks for) and keeps the first one's error.
func (sr *stormReq) complete(res reactor.Result) {
	if sr.completions.Add(1) == 1 {
		e := res.Err
		sr.err.Store(&e)
	}
}

// TestStorm races, on each backend: Arm and ArmDeadline from several
// goroutines, readiness from a writer, Cancel from three goroutines on the
// same requests, Polls whose contexts end, fds closed through the reactor
// and their numbers reused, and finally Close() while all of it runs. Every
// accepted request must complete exactly once (a counter per request catches
// a double), and every Cancel() result must equal "the outcome is
// ErrCanceled" (DESIGN §2.1, §2.2, §2.5).
func TestStorm(t *testing.T) {
	dur := 600 * time.Millisecond
	if testing.Short() {
		dur = 200 * time.Millisecond
	}
	for _, b := range connBackends {
		t.Run(name(b), func(t *testing.T) {
			fdsBefore := openFdSet(t)
			r := newReactor(t, b, 2) // closed by the test too (idempotent)
			const npairs = 32
			type sockPair struct {
				mu   sync.RWMutex // write-locked while the pair is replaced
				a, p int
			}
			pairs := make([]*sockPair, npairs)
			for i := range pairs {
				a, p := socketpair(t)
				pairs[i] = &sockPair{a: a, p: p}
			}
			var (
				mu       sync.Mutex
				reqs     []*stormReq
				stop     atomic.Bool
				wg       sync.WaitGroup
				polls    atomic.Int64
				pollBad  atomic.Value
				accepted atomic.Int64
			)
			pick := func(rng *rand.Rand) *sockPair { return pairs[rng.IntN(npairs)] }
			// actor runs step on its own goroutine, with its own seeded rng,
			// until the storm stops or step returns false.
			actor := func(seed, stream uint64, step func(rng *rand.Rand) bool) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(seed, stream))
					for !stop.Load() && step(rng) {
					}
				}()
			}
			// Submitters.
			for g := 0; g < 4; g++ {
				actor(uint64(g), 1, func(rng *rand.Rand) bool {
					pr := pick(rng)
					sr := &stormReq{}
					ev := reactor.In
					if rng.IntN(4) == 0 {
						ev = reactor.Out
					}
					cb := sr.complete
					pr.mu.RLock()
					var q *reactor.Request
					var err error
					if rng.IntN(3) == 0 {
						q, err = r.ArmDeadline(pr.a, ev, time.Now().Add(time.Duration(rng.IntN(2000))*time.Microsecond), cb)
					} else {
						q, err = r.Arm(pr.a, ev, cb)
					}
					pr.mu.RUnlock()
					if err != nil {
						if !errors.Is(err, reactor.ErrClosed) {
							t.Errorf("Arm: %v", err)
						}
						return false
					}
					sr.q = q
					accepted.Add(1)
					mu.Lock()
					reqs = append(reqs, sr)
					mu.Unlock()
					return true
				})
			}
			// Cancellers: three goroutines cancel the same random requests.
			for g := 0; g < 3; g++ {
				actor(uint64(g), 2, func(rng *rand.Rand) bool {
					mu.Lock()
					n := len(reqs)
					var sr *stormReq
					if n > 0 {
						sr = reqs[n-1-rng.IntN(min(n, 64))]
					}
					mu.Unlock()
					switch {
					case sr == nil:
					case sr.q.Cancel():
						sr.cancelTrue.Add(1)
					default:
						sr.cancelFalse.Add(1)
					}
					return true
				})
			}
			// Writer: readiness, and draining so In goes on and off.
			var wbuf [256]byte
			actor(9, 9, func(rng *rand.Rand) bool {
				pr := pick(rng)
				pr.mu.RLock()
				unix.Write(pr.p, wbuf[:1])
				if rng.IntN(2) == 0 {
					unix.Read(pr.a, wbuf[:])
				}
				pr.mu.RUnlock()
				return true
			})
			// Pollers whose contexts end at random.
			for g := 0; g < 2; g++ {
				actor(uint64(g+10), 3, func(rng *rand.Rand) bool {
					pr := pick(rng)
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(1500))*time.Microsecond)
					pr.mu.RLock()
					ev, err := r.Poll(ctx, pr.a, reactor.In)
					pr.mu.RUnlock()
					cancel()
					polls.Add(1)
					switch {
					case err == nil && ev != 0:
					case errors.Is(err, context.DeadlineExceeded), errors.Is(err, reactor.ErrClosed),
						errors.Is(err, reactor.ErrFdClosed):
					default:
						pollBad.Store(err)
					}
					return !errors.Is(err, reactor.ErrClosed)
				})
			}
			// Recycler: close an fd through the reactor with requests on it,
			// and get its number back from the next socketpair.
			actor(7, 7, func(rng *rand.Rand) bool {
				pr := pick(rng)
				pr.mu.Lock()
				if err := r.CloseFd(pr.a); err != nil {
					pr.mu.Unlock()
					return false // closed reactor: the pair's fd stays ours
				}
				unix.Close(pr.p)
				pr.a, pr.p = socketpair(t)
				pr.mu.Unlock()
				time.Sleep(200 * time.Microsecond) // pacing, not synchronisation
				return true
			})
			time.Sleep(dur) // the storm's length
			// Requests that cannot fire (Pri on an idle pair), so that
			// Close surely meets some outstanding ones mid-storm.
			ia, ip := socketpair(t)
			var pending []*stormReq
			for i := 0; i < 16; i++ {
				sr := &stormReq{}
				q, err := r.Arm(ia, reactor.Pri, sr.complete)
				if err != nil {
					t.Fatal(err)
				}
				sr.q = q
				pending = append(pending, sr) // out of the cancellers' reach
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			stop.Store(true)
			wg.Wait()
			if err := r.Close(); err != nil { // idempotent
				t.Fatal(err)
			}
			reqs = append(reqs, pending...)
			var outcomes = map[string]int{}
			for i, sr := range reqs {
				if n := sr.completions.Load(); n != 1 {
					t.Fatalf("request %d completed %d times", i, n)
				}
				err := *sr.err.Load()
				canceled := errors.Is(err, reactor.ErrCanceled)
				if canceled && sr.cancelFalse.Load() > 0 || !canceled && sr.cancelTrue.Load() > 0 {
					t.Fatalf("request %d: outcome %v but Cancel returned true %d times, false %d times",
						i, err, sr.cancelTrue.Load(), sr.cancelFalse.Load())
				}
				switch {
				case err == nil:
					outcomes["ready"]++
				case canceled:
					outcomes["canceled"]++
				case errors.Is(err, os.ErrDeadlineExceeded):
					outcomes["deadline"]++
				case errors.Is(err, reactor.ErrClosed):
					outcomes["closed"]++
				case errors.Is(err, reactor.ErrFdClosed):
					outcomes["fdclosed"]++
				default:
					outcomes["error"]++
				}
			}
			if v := pollBad.Load(); v != nil {
				t.Fatalf("Poll returned an unexpected error: %v", v)
			}
			s := r.Stats()
			if s.Completed() != s.Armed || s.Outstanding != 0 {
				t.Fatalf("stats: armed %d, completed %d, outstanding %d", s.Armed, s.Completed(), s.Outstanding)
			}
			t.Logf("%d arms (%v), %d polls, stale dropped %d, kernel enters %d",
				len(reqs), outcomes, polls.Load(), s.StaleDropped, s.KernelEnters)
			for _, pr := range pairs {
				unix.Close(pr.a)
				unix.Close(pr.p)
			}
			unix.Close(ia)
			unix.Close(ip)
			if l := fdsBefore.changed(t); len(l) != 0 {
				t.Fatalf("fds opened or closed between before and after: %v", l)
			}
			for _, want := range []string{"ready", "canceled", "closed"} {
				if outcomes[want] == 0 {
					t.Errorf("the storm produced no %q outcome: it did not race what it claims to", want)
				}
			}
		})
	}
}
