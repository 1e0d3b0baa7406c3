//go:build linux

package ring_test

import (
	"errors"
	"testing"

	"pgregory.net/rapid"

	"github.com/oneshot-io/oneshot/ring"
)

// TestQueueModel drives a small ring (8 SQ, 16 CQ entries) with random
// interleavings of GetSQE, Submit and Reap of random batch sizes, and
// checks it against a model: GetSQE fails exactly when the SQ holds 8
// unconsumed entries, SQReady and the reaped counts agree with the model,
// the CQ overflows into the kernel's list and comes back, and every NOP
// completes exactly once.
func TestQueueModel(t *testing.T) {
	for _, tc := range pollFlagCases {
		t.Run(tc.name, func(t *testing.T) {
			lockThread(t, tc.flags)
			overflowChecks := 0 // checks whose CQ overflowed: proof the test reached it
			rapid.Check(t, func(rt *rapid.T) {
				r, err := ring.New(ring.Config{Entries: 8, CQEntries: 16, Flags: tc.flags})
				if errors.Is(err, ring.ErrUnavailable) {
					t.Skip(err)
				}
				if err != nil {
					rt.Fatalf("New: %v", err)
				}
				defer r.Close()
				var (
					next       uint64 // user_data of the next NOP
					queued     uint32 // prepared, not consumed by the kernel
					completed  uint64 // consumed (NOPs complete at submit), not reaped
					seen       = map[uint64]bool{}
					overflowed int // bursts that left more CQEs than the CQ holds
					buf        = make([]ring.CQE, 64)
				)
				reap := func(rt *rapid.T, k int) int {
					n := r.Reap(buf[:k])
					for _, c := range buf[:n] {
						if c.UserData >= next || seen[c.UserData] || c.Res != 0 {
							rt.Fatalf("bad or repeated CQE %+v (next %d)", c, next)
						}
						seen[c.UserData] = true
					}
					completed -= uint64(n)
					return n
				}
				rt.Repeat(map[string]func(*rapid.T){
					"get": func(rt *rapid.T) {
						s, err := r.GetSQE()
						if queued == r.SQEntries() {
							if !errors.Is(err, ring.ErrSQFull) {
								rt.Fatalf("GetSQE with a full SQ = %v, want ErrSQFull", err)
							}
							return
						}
						if err != nil {
							rt.Fatalf("GetSQE with %d queued: %v", queued, err)
						}
						s.PrepNop(next)
						next++
						queued++
					},
					"submit": func(rt *rapid.T) {
						n, err := r.SubmitAndWait(0, 0)
						if err != nil {
							rt.Fatalf("SubmitAndWait(0, 0): %v", err)
						}
						if uint32(n) != queued {
							rt.Fatalf("submitted %d of %d", n, queued)
						}
						completed += uint64(queued)
						queued = 0
					},
					// burst fills and submits the SQ several times
					// without reaping, so the 16-entry CQ overflows.
					"burst": func(rt *rapid.T) {
						for range rapid.IntRange(1, 6).Draw(rt, "fills") {
							for ; queued < r.SQEntries(); queued++ {
								s, err := r.GetSQE()
								if err != nil {
									rt.Fatalf("GetSQE with %d queued: %v", queued, err)
								}
								s.PrepNop(next)
								next++
							}
							if n, err := r.Submit(); err != nil || uint32(n) != queued {
								rt.Fatalf("Submit = %d, %v; want %d", n, err, queued)
							}
							completed += uint64(queued)
							queued = 0
						}
						if completed > uint64(r.CQEntries()) {
							overflowed++
						}
					},
					"reap": func(rt *rapid.T) {
						k := rapid.IntRange(0, len(buf)).Draw(rt, "k")
						n := reap(rt, k)
						if n > k {
							rt.Fatalf("Reap(%d) = %d", k, n)
						}
						// Reap empties the CQ and flushes the overflow
						// list once, so it returns at least what fits.
						if want := min(uint64(k), completed+uint64(n), uint64(r.CQEntries())); uint64(n) < want {
							rt.Fatalf("Reap(%d) = %d with %d outstanding", k, n, completed+uint64(n))
						}
					},
					"": func(rt *rapid.T) {
						if r.SQReady() != queued {
							rt.Fatalf("SQReady = %d, model %d", r.SQReady(), queued)
						}
					},
				})
				// Drain: everything submitted comes back exactly once.
				if _, err := r.SubmitAndWait(0, 0); err != nil {
					rt.Fatalf("SubmitAndWait: %v", err)
				}
				completed += uint64(queued)
				for completed > 0 {
					if reap(rt, len(buf)) == 0 {
						rt.Fatalf("Reap returned 0 with %d outstanding", completed)
					}
				}
				if uint64(len(seen)) != next || r.Dropped() != 0 {
					rt.Fatalf("saw %d of %d NOPs, %d dropped", len(seen), next, r.Dropped())
				}
				if overflowed > 0 {
					overflowChecks++
				}
			})
			if overflowChecks == 0 {
				t.Fatal("no check overflowed the CQ: the model never exercised the overflow list")
			}
			t.Logf("%d checks overflowed the CQ", overflowChecks)
		})
	}
}
