package cancel

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// ErrExhausted is returned by Table.Acquire when every one of the table's
// maximum number of slots is live: 65535 whole chunks of 256, that is
// 2^24-256, the most whose index+1 fits a tag's 24-bit index field.
var ErrExhausted = errors.New("cancel: request table exhausted")

// Slots are allocated in chunks that never move, so a *Slot stays valid for
// the table's whole life and a handle can never dangle.
const (
	chunkShift = 8
	chunkSize  = 256    // 1 << chunkShift
	chunkMask  = 0xff   // chunkSize - 1
	maxChunks  = 0xffff // maxSlots / chunkSize: whole chunks whose index+1 fits a tag
)

// Slot holds one request at a time. Its state word is the only thing other
// goroutines touch; Data belongs to whoever holds the request's obligation.
// A slot's zero value is Free in generation 0, so a new chunk needs no
// initialisation; its index lives in the handle's tag, not in the slot.
type Slot[T any] struct {
	// state: atomic; the packed word drawn in state.go, changed only by CAS.
	state atomic.Uint64
	// next: atomic; free-list link (index+1 of the next free slot, 0 ends the
	// list). Meaningful only while the slot is Free; a popper may read a
	// stale value, which its CAS on the versioned head then rejects.
	next atomic.Uint32

	// Data is the reactor's per-request payload (fd, interest, callback,
	// result). Owned by the submitter from Acquire until it hands the handle
	// to the loop (that hand-off publishes it), then by the loop goroutine
	// until Release. Cancellers and the closer never touch it.
	Data T
}

type chunk[T any] [chunkSize]Slot[T]

// Table is a growable set of request slots with a lock-free free list.
// Acquire, Lookup, Range and every Handle method are safe from any goroutine
// and allocate nothing once the table has grown to its working size.
//
// Why lock-free: Acquire runs on any goroutine that calls Arm/Poll, while
// Release runs on the loop. A mutex held by a preempted submitter would stall
// the loop's Release and every other submitter; a Treiber stack whose head
// carries a version counter (against ABA) never blocks and costs one CAS per
// operation, the same as an uncontended mutex. Growth is rare and takes mu.
type Table[T any] struct {
	// head: atomic; the free list's top, drawn as
	//	 63                 24 23            0
	//	+---------------------+--------------+
	//	|  version (40)       | index+1 (24) |   index+1 == 0: list empty
	//	+---------------------+--------------+
	// Every successful push or pop bumps the version, so a CAS made with a
	// head read before another goroutine popped and re-pushed the same slot
	// fails instead of linking in a stale next.
	head atomic.Uint64
	// chunks: atomic; replaced on grow under mu, read without a lock. A new
	// slice may share the old one's backing array: grow only writes beyond
	// the old length, which no reader of the old slice looks at.
	chunks atomic.Pointer[[]*chunk[T]]
	// fresh: atomic; slots [0, fresh) have been handed out at least once
	// (live or on the free list); the rest of the allocated chunks have
	// never been used and are taken in order when the free list is empty.
	fresh atomic.Uint32
	// stale: atomic; Lookups refused because the tag's life was over.
	stale atomic.Uint64

	mu sync.Mutex // serialises grow

	// hookPop: constant after construction; nil except in tests, which use
	// it to stop a pop between reading the head's next and its CAS.
	hookPop func()
}

const (
	headIndexMask = indexMask
	headVersion   = 1 << indexBits
)

// NewTable returns a table with room for at least capacity requests before
// it first grows.
func NewTable[T any](capacity int) *Table[T] {
	t := &Table[T]{}
	empty := []*chunk[T]{}
	t.chunks.Store(&empty)
	for t.Cap() < capacity && t.Cap() < maxChunks*chunkSize {
		t.mu.Lock()
		err := t.growLocked()
		t.mu.Unlock()
		if err != nil {
			panic(fmt.Sprintf("cancel: NewTable(%d): %v", capacity, err))
		}
	}
	return t
}

// Cap returns the number of slots allocated so far.
func (t *Table[T]) Cap() int { return len(*t.chunks.Load()) * chunkSize }

// StaleLookups returns how many Lookups were refused because the tag's
// request was over (wrong generation, slot free, index out of range).
func (t *Table[T]) StaleLookups() uint64 { return t.stale.Load() }

func (t *Table[T]) slot(index uint32) *Slot[T] {
	cs := *t.chunks.Load()
	return &cs[index>>chunkShift][index&chunkMask]
}

// handle names the current life of the slot at index, given its word.
func handleOf[T any](s *Slot[T], index uint32, w uint64) Handle[T] {
	return Handle[T]{s: s, tag: w&genMask | uint64(index+1)}
}

// Acquire takes a free slot and starts a request in it (phase Submitted),
// returning the request's handle. The handle is the request's publication:
// from here on any goroutine may Cancel it, so the caller hands it to the
// loop (which calls Arm) without condition.
func (t *Table[T]) Acquire() (Handle[T], error) {
	for {
		s, index := t.pop()
		if s == nil {
			if s, index = t.takeFresh(); s == nil {
				if err := t.grow(); err != nil {
					return Handle[T]{}, err
				}
				continue
			}
		}
		w := s.state.Load()
		if State(w).Phase() != Free || w&lowMask != 0 {
			panic(fmt.Sprintf("cancel: slot %d on the free list in state %v", index, State(w)))
		}
		if !s.state.CompareAndSwap(w, pack(w&genMask, Submitted, Undecided, false, false)) {
			panic(fmt.Sprintf("cancel: slot %d changed while on the free list", index))
		}
		return handleOf(s, index, w), nil
	}
}

// Release returns the slot to the free list. Call it exactly when a
// transition returned MustRelease. Panics if the request is not Done or the
// kernel still owes a completion for its tag: reusing the slot then would
// hand a late completion to a newer request.
func (t *Table[T]) Release(h Handle[T]) {
	s := h.s
	w := s.state.Load()
	if w&genMask != h.tag&genMask || State(w).Phase() != Done || w&owesBit != 0 {
		panic(fmt.Sprintf("cancel: Release of slot %d gen %d in state %v", h.Index(), h.Gen(), State(w)))
	}
	// The generation moves on here, not at Acquire, so a tag or handle from
	// the life just ended fails every comparison while the slot sits free.
	next := (w&genMask + genOne) & genMask
	if !s.state.CompareAndSwap(w, pack(next, Free, Undecided, false, false)) {
		panic(fmt.Sprintf("cancel: slot %d changed during Release (was %v)", h.Index(), State(w)))
	}
	var zero T
	s.Data = zero // drop references the finished request held
	t.push(s, uint32(h.Index()))
}

// Lookup returns the live request a tag names. It reports false, counts the
// tag as stale and touches nothing when the tag is zero, has bit 63 or
// CallerBit set (a caller's tag is never taken for one of the table's, as
// CallerBit promises, whichever the caller asks first), names no slot, or
// names a slot whose current life has another generation.
func (t *Table[T]) Lookup(tag uint64) (Handle[T], bool) {
	i := tag & indexMask
	if i == 0 || tag>>62 != 0 || i > uint64(t.Cap()) {
		t.stale.Add(1)
		return Handle[T]{}, false
	}
	s := t.slot(uint32(i - 1))
	w := s.state.Load()
	if w&genMask != tag&genMask || State(w).Phase() == Free {
		t.stale.Add(1)
		return Handle[T]{}, false
	}
	return Handle[T]{s: s, tag: tag}, true
}

// Live returns the handle of the life slot index is in, or false when the
// slot is Free or there is no such slot. It is for a caller that links its
// live requests to each other by index (the reactor's lists of an fd's
// requests): a request stays live while it is linked, so a link need not
// keep its generation, and the handle Live returns is that life's.
func (t *Table[T]) Live(index uint32) (Handle[T], bool) {
	if index >= uint32(t.Cap()) {
		return Handle[T]{}, false
	}
	s := t.slot(index)
	w := s.state.Load()
	if State(w).Phase() == Free {
		return Handle[T]{}, false
	}
	return handleOf(s, index, w), true
}

// Range calls f with the handle and a state snapshot of every slot that is
// not Free, until f returns false. The closer uses it to find live requests;
// a request acquired or released during Range may or may not be seen, which
// is why the closer must first stop new Acquires.
func (t *Table[T]) Range(f func(Handle[T], State) bool) {
	n := t.fresh.Load()
	for i := uint32(0); i < n; i++ {
		s := t.slot(i)
		w := s.state.Load()
		if State(w).Phase() == Free {
			continue
		}
		if !f(handleOf(s, i, w), State(w)) {
			return
		}
	}
}

func (t *Table[T]) pop() (*Slot[T], uint32) {
	for {
		h := t.head.Load()
		i := h & headIndexMask
		if i == 0 {
			return nil, 0
		}
		s := t.slot(uint32(i - 1))
		next := uint64(s.next.Load())
		if t.hookPop != nil {
			t.hookPop()
		}
		if t.head.CompareAndSwap(h, (h&^headIndexMask+headVersion)|next) {
			return s, uint32(i - 1)
		}
	}
}

func (t *Table[T]) push(s *Slot[T], index uint32) {
	for {
		h := t.head.Load()
		s.next.Store(uint32(h & headIndexMask))
		if t.head.CompareAndSwap(h, (h&^headIndexMask+headVersion)|uint64(index+1)) {
			return
		}
	}
}

// takeFresh hands out the next never-used slot, or nil if every allocated
// slot has been used.
func (t *Table[T]) takeFresh() (*Slot[T], uint32) {
	for {
		n := t.fresh.Load()
		if int(n) >= t.Cap() {
			return nil, 0
		}
		if t.fresh.CompareAndSwap(n, n+1) {
			return t.slot(n), n
		}
	}
}

func (t *Table[T]) grow() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(t.fresh.Load()) < t.Cap() {
		return nil // another grow got here first
	}
	return t.growLocked()
}

func (t *Table[T]) growLocked() error {
	old := *t.chunks.Load()
	if len(old) >= maxChunks {
		return ErrExhausted
	}
	cs := old
	if len(old) == cap(old) {
		cs = make([]*chunk[T], len(old), 2*len(old)+1)
		copy(cs, old)
	}
	cs = append(cs, new(chunk[T])) // zero slots are Free, generation 0
	t.chunks.Store(&cs)
	return nil
}
