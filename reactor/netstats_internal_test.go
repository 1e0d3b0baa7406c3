package reactor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAcceptFailedCounts: an accept's failure counts as an accept error
// unless the listener caused it (its Close or its deadline), wrapped or
// not.
func TestAcceptFailedCounts(t *testing.T) {
	for _, tc := range []struct {
		err   error
		count bool
	}{
		{net.ErrClosed, false},
		{fmt.Errorf("%w: %w", net.ErrClosed, errReactorClosed), false},
		{os.ErrDeadlineExceeded, false},
		{&net.OpError{Op: "accept", Err: os.ErrDeadlineExceeded}, false},
		{os.NewSyscallError("accept4", unix.EMFILE), true},
		{os.NewSyscallError("accept4", unix.ENOBUFS), true},
		{errors.New("reactor: something else"), true},
	} {
		s := newNetStats()
		s.acceptFailed(tc.err)
		if got := s.snapshot().AcceptErrors; got != map[bool]uint64{false: 0, true: 1}[tc.count] {
			t.Errorf("acceptFailed(%v): AcceptErrors %d, want counted %v", tc.err, got, tc.count)
		}
	}
}
