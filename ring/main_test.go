//go:build linux

package ring_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/oneshot-io/oneshot/internal/seccomp"
	"github.com/oneshot-io/oneshot/ring"
)

func TestMain(m *testing.M) {
	// In a child started by seccomp.Command this installs the filter that
	// denies io_uring; elsewhere it does nothing.
	if _, err := seccomp.ApplyFromEnv(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	goleak.VerifyTestMain(m)
}

// newRing sets up a ring for a test, skipping with the diagnosis when
// io_uring is unavailable here, and closes it when the test ends.
func newRing(t testing.TB, cfg ring.Config) *ring.Ring {
	t.Helper()
	if _, denied := seccomp.Denied(); denied {
		t.Skip("io_uring is denied in this child process")
	}
	r, err := ring.New(cfg)
	if err != nil {
		if errors.Is(err, ring.ErrUnavailable) {
			t.Skipf("io_uring unavailable: %v", err)
		}
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil && !errors.Is(err, ring.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// lockThread pins the goroutine to its OS thread for rings created with
// SetupSingleIssuer or SetupDeferTaskrun, whose kernel side belongs to the
// thread that set them up.
func lockThread(t testing.TB, flags ring.SetupFlags) {
	t.Helper()
	if flags&(ring.SetupSingleIssuer|ring.SetupDeferTaskrun) != 0 {
		runtime.LockOSThread()
		t.Cleanup(runtime.UnlockOSThread)
	}
}

// prep gets an SQE and prepares it with f, failing the test when the SQ is
// full.
func prep(t testing.TB, r *ring.Ring, f func(*ring.SQE)) {
	t.Helper()
	s, err := r.GetSQE()
	if err != nil {
		t.Fatalf("GetSQE: %v", err)
	}
	f(s)
}

// waitCQEs submits what is prepared and collects exactly n CQEs, failing
// the test if they do not arrive within a generous bound.
func waitCQEs(t testing.TB, r *ring.Ring, n int) []ring.CQE {
	t.Helper()
	got := make([]ring.CQE, 0, n)
	buf := make([]ring.CQE, n)
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("got %d of %d CQEs within 5s: %+v", len(got), n, got)
		}
		if _, err := r.SubmitAndWait(uint32(n-len(got)), time.Second); err != nil {
			t.Fatalf("SubmitAndWait: %v", err)
		}
		k := r.Reap(buf[:n-len(got)])
		got = append(got, buf[:k]...)
	}
	if extra := r.Reap(buf); extra != 0 {
		t.Fatalf("%d unexpected extra CQEs: %+v", extra, buf[:extra])
	}
	return got
}
