//go:build linux

package ring_test

import (
	"testing"

	"github.com/oneshot-io/oneshot/ring"
)

func TestNopRoundTrip(t *testing.T) {
	r := newRing(t, ring.Config{Entries: 8})
	const n = 5
	for i := uint64(1); i <= n; i++ {
		prep(t, r, func(s *ring.SQE) { s.PrepNop(i * 100) })
	}
	if got := r.SQReady(); got != n {
		t.Fatalf("SQReady = %d before submit, want %d", got, n)
	}
	enters := r.Enters()
	cqes := waitCQEs(t, r, n)
	if r.SQReady() != 0 {
		t.Fatalf("SQReady = %d after submit, want 0", r.SQReady())
	}
	if r.Enters() == enters {
		t.Fatal("Enters did not count the io_uring_enter calls")
	}
	for i, c := range cqes {
		// NOPs complete in submission order.
		if want := uint64(i+1) * 100; c.UserData != want || c.Res != 0 {
			t.Errorf("CQE %d = %+v, want user_data %d res 0", i, c, want)
		}
	}
}

// TestTwoMappings runs NOPs, wrap-around included, through a ring whose CQ
// is mapped apart from its SQ, as on kernels without FeatSingleMmap.
func TestTwoMappings(t *testing.T) {
	single := newRing(t, ring.Config{Entries: 4}) // skips where io_uring is unavailable
	if single.Features().Has(ring.FeatSingleMmap) && !ring.SingleMapping(single) {
		t.Fatal("FeatSingleMmap present but the rings are mapped twice")
	}
	r, err := ring.NewTwoMmaps(ring.Config{Entries: 4})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer r.Close()
	if ring.SingleMapping(r) {
		t.Fatal("the CQ ring shares the SQ mapping")
	}
	for i := uint64(0); i < 20; i++ {
		prep(t, r, func(s *ring.SQE) { s.PrepNop(i) })
		if c := waitCQEs(t, r, 1)[0]; c.UserData != i {
			t.Fatalf("CQE %+v, want user_data %d", c, i)
		}
	}
}
