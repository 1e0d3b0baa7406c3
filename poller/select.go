//go:build linux

package poller

import (
	"errors"
	"fmt"
)

// UringSetup chooses how the io_uring backend sets its ring up.
type UringSetup uint8

const (
	// UringSingleIssuer asks for IORING_SETUP_SINGLE_ISSUER |
	// DEFER_TASKRUN | COOP_TASKRUN | TASKRUN_FLAG, the fastest setup for a
	// loop that owns its ring, and steps down to COOP_TASKRUN and then to a
	// plain ring where the kernel refuses flags with EINVAL. With
	// SINGLE_ISSUER the owner must stay on one locked OS thread.
	UringSingleIssuer UringSetup = iota
	// UringCoop asks for COOP_TASKRUN | TASKRUN_FLAG (any thread may own
	// the poller in turn), then a plain ring.
	UringCoop
	// UringPlain asks for no setup flags.
	UringPlain
)

// Options configure Open.
type Options struct {
	// Backend is Auto (also the zero value ""), Uring or Epoll.
	Backend Backend
	// Entries is the io_uring submission queue size (default 256; the
	// completion queue is twice as big). Arms beyond it in one loop turn
	// flush the queue early.
	Entries uint32
	// Setup chooses the io_uring setup flags (default UringSingleIssuer).
	Setup UringSetup
	// Recv asks the io_uring backend for a receive path (RingIO).
	// Where the kernel lacks one, or refuses these buffers (memory
	// they cannot be mapped in), the poller runs without it and
	// RingIOOf says why; the zero value asks for none.
	Recv RecvOptions
	// CallerDisarms is the caller's promise that it Disarms every tag
	// armed on an fd before it calls Forget(fd), as the reactor does (it
	// keeps its own list of an fd's requests). io_uring then keeps no
	// list of an fd's tags, and so no record per fd number: 8 bytes that
	// every poller seeing the number pays, and each of a reactor's loops
	// sees about every connection's number. Forget then disarms nothing;
	// it hands the whole SQ to the kernel at once when some arm was
	// disarmed while still queued, whichever fd it was on.
	// epoll ignores it: it routes an fd's events through that list.
	CallerDisarms bool
	// Records, with CallerDisarms, has an io_uring poller keep its record
	// of each armed tag (a 2-byte TagRecord) where the caller keeps its
	// request, rather than a 16-byte record of its own per tag, by tag
	// index. Every tag armed must then name a live request of the
	// caller's from its arm to its last Event (Arm refuses one that does
	// not, ErrBadTag). Open refuses it without CallerDisarms
	// (ErrBadOptions); epoll ignores it.
	Records Records
}

// Selection tells which backend Open chose and why.
type Selection struct {
	Requested Backend // what Options asked for (Auto for "")
	Backend   Backend // Uring or Epoll: what runs
	// Reason says why, in words a user can act on, e.g. "io_uring
	// unavailable: io_uring_setup: operation not permitted (EPERM) ...;
	// using epoll".
	Reason string
	// UringErr is why io_uring is not in use: nil when it is or when
	// epoll was asked for. errors.Is(UringErr, ring.ErrUnavailable) holds
	// when the kernel or a seccomp filter refused it.
	UringErr error
	// UringFlags names the setup flags the ring runs with ("" for epoll).
	UringFlags string
}

// String returns the Reason prefixed with the backend.
func (s Selection) String() string { return string(s.Backend) + ": " + s.Reason }

// ErrUnknownBackend refuses an Options.Backend that is not Auto, Uring or
// Epoll.
var ErrUnknownBackend = errors.New("poller: unknown backend")

// ErrBadOptions refuses Options that contradict each other.
var ErrBadOptions = errors.New("poller: inconsistent options")

// Open opens the backend opts asks for. Auto tries io_uring (ring setup plus
// a probe of the opcodes the backend uses) and falls back to epoll, saying
// why in the Selection; Uring where io_uring is unavailable is an error that
// wraps the ring's reason.
func Open(opts Options) (Poller, Selection, error) {
	sel := Selection{Requested: opts.Backend}
	if sel.Requested == "" {
		sel.Requested = Auto
	}
	if opts.Records != nil && !opts.CallerDisarms {
		// The poller's fd lists live in its own ledger; a caller that
		// keeps the records must also keep the lists.
		return nil, sel, fmt.Errorf("%w: Records needs CallerDisarms", ErrBadOptions)
	}
	switch sel.Requested {
	case Epoll:
		p, err := NewEpoll()
		if err != nil {
			return nil, sel, err
		}
		sel.Backend, sel.Reason = Epoll, "epoll requested"
		return p, sel, nil
	case Uring, Auto:
	default:
		return nil, sel, fmt.Errorf("%w: %q (want %q, %q or %q)", ErrUnknownBackend, opts.Backend, Auto, Uring, Epoll)
	}
	p, flags, uerr := newUring(opts)
	if uerr == nil {
		sel.Backend, sel.UringFlags = Uring, flags
		sel.Reason = fmt.Sprintf("io_uring %s (setup %s)", verb(sel.Requested), flags)
		return p, sel, nil
	}
	sel.UringErr = uerr
	if sel.Requested == Uring {
		return nil, sel, fmt.Errorf("poller: io_uring requested but unavailable: %w", uerr)
	}
	p, err := NewEpoll()
	if err != nil {
		return nil, sel, fmt.Errorf("poller: io_uring unavailable (%v) and epoll failed: %w", uerr, err)
	}
	sel.Backend = Epoll
	sel.Reason = fmt.Sprintf("%v; using epoll", uerr)
	return p, sel, nil
}

func verb(requested Backend) string {
	if requested == Uring {
		return "requested"
	}
	return "available"
}
