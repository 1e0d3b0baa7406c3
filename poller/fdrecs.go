//go:build linux

package poller

import (
	"fmt"

	"github.com/oneshot-io/oneshot/internal/chunked"
)

// fdRecs holds what a poller records per fd number, for the fds armed on
// it only. A program with several pollers (the reactor's loops, each with
// its own, among which a Listener hands Conns out in turn whatever their
// numbers) sees about every fd number on every poller: a record indexed by
// fd number costs each poller a record for about every fd. Here a poller
// pays 4 bytes per fd number, the index, and the record only for an fd
// armed on it, from its first arm until it has no tag and no registration
// left (releaseIfEmpty, which the backends call where an operation ends).
//
// Invariants, kept by make and releaseIfEmpty only:
//   - idx[fd] != 0 iff fd has a record, and then recs[idx[fd]-1] is it;
//   - a record on free is on no idx entry and is zero.
type fdRecs struct {
	idx  chunked.Array[uint32] // by fd: its record's index+1; 0 = none
	recs chunked.Array[fdRec]
	n    int      // records in use
	free []uint32 // released records' indexes
}

// fdRec is one fd's record: its list of armed tags (the ledger's, kept
// where the poller keeps lists) and, on epoll, its registration.
type fdRec struct {
	tags fdTags
	reg  epollReg
}

// empty reports whether r holds nothing: no tag, no registration that
// Forget would still have to delete, and no tag counted. What else a
// registration in regNone keeps (its last generation, mask, pending) no
// arm reads: the next registration takes a new generation, so a report
// of the old one is stale either way.
func (r *fdRec) empty() bool {
	return r.tags.head == 0 && r.reg.state == regNone && !r.reg.edge && r.reg.n == [len(interestBits)]uint16{}
}

// find returns fd's record, or nil if it has none. The pointer is valid
// until the record is released.
func (t *fdRecs) find(fd int) *fdRec {
	if fd >= t.idx.Cap() {
		return nil
	}
	i := *t.idx.At(fd)
	if i == 0 {
		return nil
	}
	return t.recs.At(int(i - 1))
}

// mustFind is find for an fd that has a record (it has a tag, or a
// registration to keep); none is a broken invariant.
func (t *fdRecs) mustFind(fd int) *fdRec {
	r := t.find(fd)
	if r == nil {
		panic(fmt.Sprintf("poller: fd %d has tags or a registration but no record", fd))
	}
	return r
}

// make returns fd's record, made (zero) if it had none.
func (t *fdRecs) make(fd int) *fdRec {
	if r := t.find(fd); r != nil {
		return r
	}
	var i uint32
	if k := len(t.free); k > 0 {
		i, t.free = t.free[k-1], t.free[:k-1]
	} else {
		i = uint32(t.n)
		t.recs.Grow(int(i) + 1)
	}
	t.idx.Grow(fd + 1)
	*t.idx.At(fd) = i + 1
	t.n++
	return t.recs.At(int(i))
}

// releaseIfEmpty gives fd's record back once it holds nothing. A backend
// calls it where an operation on fd ends, never while it holds the
// record's pointer.
func (t *fdRecs) releaseIfEmpty(fd int) {
	r := t.find(fd)
	if r == nil || !r.empty() {
		return
	}
	i := *t.idx.At(fd) - 1
	*r = fdRec{}
	*t.idx.At(fd) = 0
	t.free = append(t.free, i)
	t.n--
}
