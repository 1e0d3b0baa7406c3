//go:build linux

package reactor

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
)

// netStats is a NetListener's counters, shared with the NetConns it
// accepted (netFD.ctr), so that a NetConn's bytes and its close count for
// its listener after the listener itself closed.
//
// Bytes are counted per NetConn (connCounters: each count written by the
// NetConn's one reader or one writer at a time, so no two goroutines
// contend for a line that every Read of every connection would touch)
// and summed at Stats: the open NetConns' by walking them, the closed
// ones' from what each left at its close. A scrape costs O(active); a
// Read one uncontended atomic add.
type netStats struct {
	acceptErrors atomic.Uint64

	mu       sync.Mutex
	accepted uint64                     // guarded by mu; those closed are accepted - len(live)
	live     map[*connCounters]struct{} // of NetConns accepted, not yet closed; guarded by mu
	doneIn   uint64                     // bytes of closed NetConns; guarded by mu
	doneOut  uint64                     // guarded by mu
}

// connCounters is an accepted NetConn's byte counts. It names its
// listener's netStats and not the other way round from the NetConn: the
// live set holds these, and never keeps a NetConn's netFD reachable.
type connCounters struct {
	in, out atomic.Uint64
	owner   *netStats // constant
}

func newNetStats() *netStats { return &netStats{live: make(map[*connCounters]struct{})} }

// adopt counts fd, just accepted, as the listener's.
func (s *netStats) adopt(fd *netFD) {
	fd.ctr = &connCounters{owner: s}
	s.mu.Lock()
	s.accepted++
	s.live[fd.ctr] = struct{}{}
	s.mu.Unlock()
}

// retire moves c, its NetConn closing, from the live set to the closed
// counts; c no longer moves (no Read or Write holds a reference).
func (c *connCounters) retire() {
	s := c.owner
	s.mu.Lock()
	delete(s.live, c)
	s.doneIn += c.in.Load()
	s.doneOut += c.out.Load()
	s.mu.Unlock()
}

// countIn and countOut add n bytes moved on fd, for its listener (none for
// a NetConn not accepted).
func (fd *netFD) countIn(n int) {
	if fd.ctr != nil && n > 0 {
		fd.ctr.in.Add(uint64(n))
	}
}

func (fd *netFD) countOut(n int64) {
	if fd.ctr != nil && n > 0 {
		fd.ctr.out.Add(uint64(n))
	}
}

// acceptFailed counts err, an accept's failure, where accept4 failed (not
// with EAGAIN or ECONNABORTED, which accept retries): not the listener's
// own doing (its Close, its deadline), nor its wait's.
func (s *netStats) acceptFailed(err error) {
	var se *os.SyscallError
	if errors.As(err, &se) && se.Syscall == "accept4" {
		s.acceptErrors.Add(1)
	}
}

func (s *netStats) snapshot() ListenerStats {
	st := ListenerStats{AcceptErrors: s.acceptErrors.Load()}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Accepted, st.Active = s.accepted, int64(len(s.live))
	st.Closed = st.Accepted - uint64(st.Active)
	st.BytesIn, st.BytesOut = s.doneIn, s.doneOut
	for c := range s.live {
		st.BytesIn += c.in.Load()
		st.BytesOut += c.out.Load()
	}
	return st
}

// Stats returns the listener's counters, in the Listener's shape (so that
// reactorprom exports both alike): Accepted, Active (accepted NetConns not
// yet closed), Closed, AcceptErrors (accept4 failures other than EAGAIN
// and ECONNABORTED), and BytesIn and BytesOut, what its NetConns' Reads,
// Writes and ReadFroms moved. A NetConn counts here from its Accept to its
// Close, the listener's own Close notwithstanding. The other fields are
// the Listener's alone (its loop's backpressure, output buffers and
// accept backoff; a NetConn's output is the caller's) and stay 0.
func (ln *NetListener) Stats() ListenerStats { return ln.stats.snapshot() }
