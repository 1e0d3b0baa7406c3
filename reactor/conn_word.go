//go:build linux

package reactor

import "sync/atomic"

// connWord holds, in one atomic word, the small parts of a Conn's state:
// what other goroutines read without the Conn's mutex or write beside the
// loop, and the loop's own flags. Apart they took 16 bytes, 8 more than
// the word; with the 8 its requests' links save (4-byte slot links, not
// 8-byte tags) an idle Conn is 128 bytes, a size class below 144.
//
//	bits   part                                written by
//	-----  ----------------------------------  ---------------------------------
//	0-3    phase (connPhase)                   the loop (setPhaseLocked; under
//	                                           mu when Write's answer changes)
//	4      bInCall: a handler call runs        the loop
//	5      bTaskQueued: a taskFlush is queued  any goroutine, under mu
//	6      bWrShut: CloseWrite asked           any goroutine, under mu
//	7      bCloseAsked: Close(Now) asked       any goroutine, under mu
//	8-15   tasks asked during a handler call   any goroutine (ask); the loop
//	       (1<<task)                           takes them (endCall)
//	16-23  the loop's flags (lfPeerEOF ...)    the loop
//	24     bWriteFailed: a write failed; its   any goroutine, under mu
//	       error is rare's werr
//	32-63  pending output bytes (saturating    any goroutine, under mu
//	       at maxPendingLimit)
//
// Every write is an atomic read-modify-write of its own bits only (Or, And,
// or a compare-and-swap loop for a field of several bits), so writers of
// different parts never undo each other.
type connWord struct{ v atomic.Uint64 }

// connBits are one-bit parts of a connWord.
type connBits uint64

const (
	phaseMask = 1<<4 - 1

	bInCall     connBits = 1 << 4
	bTaskQueued connBits = 1 << 5
	bWrShut     connBits = 1 << 6
	bCloseAsked connBits = 1 << 7

	bWriteFailed connBits = 1 << 24

	askShift = 8
	askMask  = 0xff << askShift

	pendingShift = 32
)

// The loop's flags: facts only the loop reads and writes.
const (
	lfPeerEOF connBits = 1 << (16 + iota) // a read returned end of file: the peer sends nothing more
	lfOpened                              // OnOpen was called, so OnClose is owed
	// lfPollOnce: the next read goes after a readiness poll, not through
	// the ring (which had lent every buffer twice in a row: lfStarved).
	lfPollOnce
	// lfDrained: the last readSome ended at EAGAIN or a short read, so
	// the socket held nothing more then, and the next read poll may keep
	// the promise of poller.Edge (epoll keeps the fd registered).
	lfDrained
	// lfSendOwed: a send was delivered before the kernel's end, which may
	// still read its chunk: finish keeps the chunk out of the pool.
	lfSendOwed
	// lfBackedUp: the output backed up (a chunk came while a send from
	// before it was still in flight, or the Conn paused: take, readSome)
	// and has not drained since while open (flushed); meanwhile a
	// receive takes one buffer at a time.
	lfBackedUp
	// lfStarved: the receive ended for want of a buffer (ENOBUFS) and
	// went back into the ring, and no bytes came since; starved again,
	// the Conn reads once after a poll.
	lfStarved
)

// The phases, the tasks and the loop's flags fit their bits.
const (
	_ uint = phaseMask - uint(numPhases-1)
	_ uint = 7 - uint(taskForceStop)
	_ uint = 1<<24 - 1 - uint(lfStarved)
	_ uint = 1<<31 - 1 - maxPendingLimit
)

func (w *connWord) phase() connPhase { return connPhase(w.v.Load() & phaseMask) }

// setPhase replaces the phase, leaving every other part as it is.
func (w *connWord) setPhase(p connPhase) {
	for {
		old := w.v.Load()
		if w.v.CompareAndSwap(old, old&^phaseMask|uint64(p)) {
			return
		}
	}
}

func (w *connWord) has(b connBits) bool { return w.v.Load()&uint64(b) != 0 }

func (w *connWord) set(b connBits, on bool) {
	if on {
		w.v.Or(uint64(b))
	} else {
		w.v.And(^uint64(b))
	}
}

// ask records task as asked and reports whether a handler call was
// running then, in one step: if it was, the loop's endCall, which clears
// bInCall and takes the tasks in one step too, comes after and takes this
// one; if not, the caller must queue the task itself.
func (w *connWord) ask(task int32) (inCall bool) {
	return w.v.Or(1<<task<<askShift)&uint64(bInCall) != 0
}

// endCall ends a handler call: it clears bInCall and takes the tasks
// asked meanwhile, a bit 1<<task each.
func (w *connWord) endCall() (tasks uint32) {
	return uint32(w.v.And(^uint64(bInCall|askMask)) & askMask >> askShift)
}

func (w *connWord) pending() int { return int(w.v.Load() >> pendingShift) }

// setPending stores n pending bytes, saturated at maxPendingLimit.
func (w *connWord) setPending(n int) {
	v := uint64(min(n, maxPendingLimit)) << pendingShift
	for {
		old := w.v.Load()
		if w.v.CompareAndSwap(old, old&(1<<pendingShift-1)|v) {
			return
		}
	}
}
