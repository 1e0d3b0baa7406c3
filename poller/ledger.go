//go:build linux

package poller

import (
	"fmt"

	"github.com/oneshot-io/oneshot/internal/chunked"
)

// ledger is the record both backends keep of the tags armed and not yet
// returned by Wait: a table indexed by the tag's index bits (TagIndexBits),
// and per fd a list of its tags threaded through that table in arming
// order, headed in the fd's record (fdRecs, which epoll's registration
// shares). Arming, completing and disarming a tag are index arithmetic: no
// map, no search. The tables grow to the largest index and fd seen, which
// the caller keeps dense (the reactor's tags are cancel-slot numbers, its
// fds the process's descriptors); a record per fd exists only for the fds
// armed here.
//
// Invariants, kept by add and remove only:
//   - tags[i].tag != 0 iff a tag with index i is armed, and then
//     tags[i].tag&TagIndexMask == i;
//   - an armed tag is on exactly one fd's list, the fd it was armed on,
//     and fd's record's tags.head is 0 iff that list is empty (unless
//     unlisted: then there are no lists), an fd with tags always having
//     a record.
type ledger struct {
	tags  chunked.Array[tagRec]   // by tag index; index 0 is never used
	links chunked.Array[tagLinks] // by tag index, beside tags; empty when unlisted
	fds   fdRecs                  // by fd: its list's head, and epoll's registration; empty when unlisted
	n     int                     // tags armed
	// unlisted: constant; the lists are not kept (Options.CallerDisarms
	// on io_uring): first finds nothing, and fds never grows.
	unlisted bool
}

// tagRec is one armed tag. Every idle connection keeps one, so its fields
// are packed: 16 bytes; its place in its fd's list is beside it (links),
// where a ledger without lists (unlisted) keeps nothing. What io_uring
// needs to know of an armed tag is its TagRecord, which a caller may keep
// instead (Options.Records).
type tagRec struct {
	tag uint64 // 0: the index is free
	fd  int32
	TagRecord
}

// TagRecord is what an io_uring poller records of one armed tag: its
// events and kind, and whether its cancel is on its way and its SQE may
// still sit in the SQ; 2 bytes. A caller that keeps it beside its own
// request (Options.Records) spares the poller a 16-byte record per tag.
// The zero TagRecord is not armed.
type TagRecord struct {
	ev evBits   // the events armed (packEv; Edge is never kept)
	st recState // its kind, and the flags below
}

// recState packs a TagRecord's kind (low 3 bits) and flags.
type recState uint8

const (
	recKindMask recState = 0x07
	// recArmed: a Records' record is armed (the ledger's own records
	// are armed while their tag is set).
	recArmed recState = 0x08
	// recDisarming: its ASYNC_CANCEL is queued or done.
	recDisarming recState = 0x10
	// recQueued: booked since the SQ was last seen empty, so its SQE may
	// still sit there (uringPoller.unsubmitted). Exact, where an arm's
	// number compared with the submitted count took 4 bytes more and
	// could only be sure modulo 2^32.
	recQueued recState = 0x20
)

// The kinds fit their bits.
const _ = uint(recKindMask) - uint(kindAccept)

// events returns the events r was armed with.
func (r *TagRecord) events() uint32 { return r.ev.mask() }

func (r *TagRecord) kind() tagKind       { return tagKind(r.st & recKindMask) }
func (r *TagRecord) has(f recState) bool { return r.st&f != 0 }

func (r *TagRecord) set(f recState, on bool) {
	if on {
		r.st |= f
	} else {
		r.st &^= f
	}
}

// Records is a caller's store of the poller's TagRecords, one beside each
// of its requests (Options.Records; io_uring with CallerDisarms only).
// The poller calls it on its owner's goroutine only.
type Records interface {
	// Record returns the record of the caller's live request tag, or nil
	// when tag names none (a generation past, or never issued). It stays
	// valid until the caller ends that request, which it never does while
	// the record is armed.
	Record(tag uint64) *TagRecord
	// Armed calls f with the tag of each armed record, for Close.
	Armed(f func(tag uint64))
}

// tagKind is what an io_uring tag's request is.
type tagKind uint8

const (
	kindPoll tagKind = iota
	kindRecv
	kindRecvBounded // from uringPoller.bounded
	kindSend
	kindAccept
)

// tagLinks is a tag's place in its fd's list: tag indexes, 0 ending it.
type tagLinks struct{ prev, next uint32 }

// fdTags heads one fd's list.
type fdTags struct{ head, tail uint32 }

// TagIndexBits is how many low bits of a tag are its index: the ledger slot
// it is recorded in. Two tags armed at once must differ there.
const TagIndexBits = 24

// TagIndexMask selects a tag's index.
const TagIndexMask uint64 = 1<<TagIndexBits - 1

// get returns tag's record, or nil when tag is not armed (its index free or
// holding another generation).
func (g *ledger) get(tag uint64) *tagRec {
	i := tag & TagIndexMask
	if i >= uint64(g.tags.Cap()) {
		return nil
	}
	if r := g.tags.At(int(i)); r.tag == tag {
		return r
	}
	return nil
}

// free reports ErrTagInUse when tag's index holds an armed tag.
func (g *ledger) free(tag uint64) error {
	i := tag & TagIndexMask
	if i < uint64(g.tags.Cap()) {
		if held := g.tags.At(int(i)).tag; held != 0 {
			return fmt.Errorf("%w: %#x (index %d held by %#x)", ErrTagInUse, tag, i, held)
		}
	}
	return nil
}

// add records tag as armed on fd; ErrTagInUse when its index is taken. The
// returned pointer is valid until the record is removed.
func (g *ledger) add(tag uint64, fd int, events uint32) (*tagRec, error) {
	i := uint32(tag & TagIndexMask)
	g.tags.Grow(int(i) + 1)
	r := g.tags.At(int(i))
	if r.tag != 0 {
		return nil, fmt.Errorf("%w: %#x (index %d held by %#x)", ErrTagInUse, tag, i, r.tag)
	}
	ev := packEv(events)
	if ev.mask() != events {
		panic(fmt.Sprintf("poller: events %#x do not pack in a tag record", events))
	}
	if g.unlisted {
		*r = tagRec{tag: tag, fd: int32(fd), TagRecord: TagRecord{ev: ev}}
		g.n++
		return r, nil
	}
	g.links.Grow(int(i) + 1)
	h := &g.fds.make(fd).tags
	*r = tagRec{tag: tag, fd: int32(fd), TagRecord: TagRecord{ev: ev}}
	*g.links.At(int(i)) = tagLinks{prev: h.tail}
	if h.tail != 0 {
		g.links.At(int(h.tail)).next = i
	} else {
		h.head = i
	}
	h.tail = i
	g.n++
	return r, nil
}

// remove forgets r, which must be armed, and unlinks it from its fd's list.
func (g *ledger) remove(r *tagRec) {
	i := uint32(r.tag & TagIndexMask)
	if g.tags.At(int(i)) != r {
		panic(fmt.Sprintf("poller: ledger record for %#x is not at its index", r.tag))
	}
	if g.unlisted {
		*r = tagRec{}
		g.n--
		return
	}
	h := &g.fds.mustFind(int(r.fd)).tags
	k := g.links.At(int(i))
	if k.prev != 0 {
		g.links.At(int(k.prev)).next = k.next
	} else {
		h.head = k.next
	}
	if k.next != 0 {
		g.links.At(int(k.next)).prev = k.prev
	} else {
		h.tail = k.prev
	}
	*k = tagLinks{}
	*r = tagRec{}
	g.n--
}

// first returns the index of fd's first armed tag, 0 if none.
func (g *ledger) first(fd int) uint32 {
	if r := g.fds.find(fd); r != nil {
		return r.tags.head
	}
	return 0
}

// at returns the record at a list index from first or next.
func (g *ledger) at(i uint32) *tagRec { return g.tags.At(int(i)) }

// next returns the index after i on its fd's list, 0 at its end.
func (g *ledger) next(i uint32) uint32 { return g.links.At(int(i)).next }
