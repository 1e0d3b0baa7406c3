//go:build linux

package poller

import (
	"math"

	"golang.org/x/sys/unix"
)

// An fd's registration record on the epoll backend: its state, the
// interest it is enabled for, and how many armed tags want each bit (see
// the state table in epoll.go).

type regState uint8

const (
	regNone regState = iota
	regIdle
	regActive
)

// epollReg is the poller's record of one fd's registration, in the fd's
// record (fdRecs, beside the head of its ledger list of the tags armed on
// it). Owned by the owner goroutine.
type epollReg struct {
	gen   uint32 // generation of the current registration; valid unless regNone
	mask  evBits // interest the registration is enabled for in regActive
	state regState
	edge  bool // an edge registration (EPOLLET, kept from arm to arm)
	// pending: what an edge registration reported that no tag took;
	// decides the next arm that asks for it.
	pending evBits
	// n counts, per interestBits, the tags armed on the fd that ask for
	// it: the interest is their union, kept without walking the fd's
	// list (many waiters on one fd made every Arm a walk of all of them).
	// 16 bits each, so the record is 16 bytes: Arm refuses a tag that
	// would make a count overflow (ErrTooManyTags).
	n [len(interestBits)]uint16
}

// evBits is an epoll event mask in a byte: In, Pri, Out, Err and Hup keep
// their bits, RdHup and EPOLLET move to 0x20 and 0x40, and nothing else is
// kept (epoll reports nothing else here). Every armed fd keeps a
// registration, so its bytes are paid per connection: 16, not 32.
type evBits uint8

const (
	evLow   = In | Pri | Out | Err | Hup // the bits kept where they are
	evRdHup = 0x20
	evET    = 0x40
)

// packEv packs m.
func packEv(m uint32) evBits {
	b := evBits(m & evLow)
	if m&RdHup != 0 {
		b |= evRdHup
	}
	if m&unix.EPOLLET != 0 {
		b |= evET
	}
	return b
}

// mask unpacks b.
func (b evBits) mask() uint32 {
	m := uint32(b) & evLow
	if b&evRdHup != 0 {
		m |= RdHup
	}
	if b&evET != 0 {
		m |= unix.EPOLLET
	}
	return m
}

// interestBits are what a registration's mask is made of; Err and Hup are
// reported unasked.
var interestBits = [...]uint32{In, Pri, Out, RdHup}

// want returns the union of the interest of the fd's tags.
func (r *epollReg) want() uint32 {
	var m uint32
	for i, b := range interestBits {
		if r.n[i] != 0 {
			m |= b
		}
	}
	return m
}

// count adds d (1 or -1) to the counts of the bits of events.
func (r *epollReg) count(events uint32, d uint16) {
	for i, b := range interestBits {
		if events&b != 0 {
			r.n[i] += d
		}
	}
}

// full reports whether a tag asking for events would overflow a count.
func (r *epollReg) full(events uint32) bool {
	for i, b := range interestBits {
		if events&b != 0 && r.n[i] == math.MaxUint16 {
			return true
		}
	}
	return false
}
