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
// where accept4 failed, wrapped or not; not where the listener caused it
// (its Close or its deadline) or its wait failed.
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
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", unix.EMFILE)}, true},
		{errors.New("reactor: a wait's failure"), false},
		{os.NewSyscallError("read", unix.EIO), false},
	} {
		s := newNetStats()
		s.acceptFailed(tc.err)
		if got := s.snapshot().AcceptErrors; got != map[bool]uint64{false: 0, true: 1}[tc.count] {
			t.Errorf("acceptFailed(%v): AcceptErrors %d, want counted %v", tc.err, got, tc.count)
		}
	}
}
