//go:build linux

// Package poller is oneshot's one-shot readiness backend: it arms a single
// poll for a tag on a file descriptor and reports exactly one Event for that
// tag. Two backends implement it: io_uring (IORING_OP_POLL_ADD through the
// project's ring package) and epoll (EPOLLONESHOT, or one edge-triggered
// registration kept for an fd whose caller makes the Edge promise). Open
// chooses between them and says why.
//
// # The contract (both backends)
//
// A tag is the caller's name for one armed poll: bit 63 clear and a nonzero
// index in its low TagIndexBits (ValidTag). The poller uses bit 63 for its
// own kernel requests (cancels, the wake-up poll) so those can never be
// mistaken for a caller's. The index is where the poller records the tag
// (a table, not a map: arming and completing cost no hashing and no search),
// so two tags armed at once must have different indexes, and indexes should
// be dense, as cancel's slot numbers are: the table grows to the largest
// one. The other bits are opaque to the poller; the caller puts a
// generation in them so that a tag is never armed again while the kernel
// may still post for its previous use.
//
//	call                 | the tag's one Event is ...
//	---------------------+-----------------------------------------------------
//	Arm returns nil      | exactly one, from a later Wait: Ready (mask), Failed
//	                     | (Errno, e.g. EBADF for a closed fd) or Canceled
//	Arm returns an error | none: the arguments were refused (ErrBadTag,
//	                     | ErrTagInUse, ErrBadFd, ErrBadEvents, ErrClosed;
//	                     | on epoll ErrTooManyTags past 65,535 on one fd and
//	                     | event)
//	Disarm, not yet fired| Canceled, or the readiness that won the race
//	Disarm after its     | nothing more: Disarm reports false and does nothing
//	Event was returned   |
//	or decided           |
//	Forget(fd)           | every tag armed on fd: as Disarm
//	Close                | none: Close cancels every armed tag, waits until
//	                     | the kernel has posted every completion it owes,
//	                     | and drops them (counted in Stats.Dropped)
//
// A tag may be armed again once its Event came out of Wait. A caller that
// needs every tag's Event at shutdown (the reactor reporting a readiness that
// won) Disarms each armed tag and Waits until Stats().Armed is zero before
// calling Close.
//
// Kernel failures are reported as the tag's Event, never by Arm: epoll_ctl's
// EBADF and io_uring's -EBADF completion both arrive as a Failed Event, so the
// caller has one path for them on both backends.
//
// Before closing an fd that may have tags armed, call Forget(fd). The
// io_uring ring holds its own reference to the file, so close(2) does not end
// a pending POLL_ADD (liburing #932), and epoll silently drops a closed file's
// registration, so without Forget its tags would wait until Close. After
// Forget, fd's number may be reused at once: the new fd's tags never see the
// old one's events (epoll registrations carry a generation; io_uring
// completions carry the tag), and the old tags never see the new file (an
// io_uring POLL_ADD resolves its fd number when the kernel takes it, so
// Forget submits at once an arm on fd that is still queued). The file
// itself stays open until the kernel ends the canceled polls: a caller
// that needs close(2) to release it at once (a listening socket that
// must stop listening) calls Settle between Forget and close(2).
//
// A caller that Disarms every tag it armed on fd before Forget(fd) may say
// so (Options.CallerDisarms): io_uring then keeps no list of an fd's tags,
// nor a record per fd number, and Forget disarms nothing: it hands the
// SQ to the kernel at once when some arm was disarmed while still queued
// (it cannot tell whose), so that none resolves fd's number after the
// close. epoll keeps its lists either way.
//
// # Where the backends differ
//
// Both meet the contract; these cases reach it by different paths:
//
//	case                         | io_uring                 | epoll
//	-----------------------------+--------------------------+----------------------
//	Arm on a closed fd           | Failed EBADF (its CQE)   | Failed EBADF (ctl)
//	Arm on a regular file        | Ready at once            | Failed EPERM
//	reader and writer on one fd  | two POLL_ADDs            | one registration, the
//	                             |                          | union; the side that
//	                             |                          | did not fire re-armed
//	fd closed without Forget,    | the poll holds the file  | the registration dies
//	its tags still armed         | open and may still fire  | silently; its tags
//	                             | Ready; Disarm cancels it | wait for Disarm, or
//	                             |                          | fail at the next ctl
//	                             |                          | on that number (an
//	                             |                          | Edge arm makes none:
//	                             |                          | the broken promise
//	                             |                          | leaves it waiting)
//	old file fires after its     | the poll is the old tag's| the event's generation
//	number was reused            | own: the new tag unmoved | is stale: dropped
//	Disarm                       | ASYNC_CANCEL, queued; the| DEL/MOD now; Canceled
//	                             | kernel decides the race  | is decided at once
//	syscalls per loop turn       | one io_uring_enter (+1   | one epoll_ctl per Arm
//	                             | per 20 completions of a  | and Disarm, one wait;
//	                             | burst on DEFER_TASKRUN,  | none for an Edge arm
//	                             | but after Gather)        | once fd is registered
//	Edge arm, fd readied while   | a POLL_ADD that finds the| Ready at once from
//	no tag of it was armed       | level: Ready if still so | what was kept (perhaps
//	                             |                          | used since: spurious)
//
// # Threads
//
// One goroutine, the owner, calls every method except Wake, which is safe
// from any goroutine at any time, Close included. With the io_uring backend
// set up single-issuer (the default, UringSingleIssuer) the owner must also
// stay on one OS thread from Open to Close: call runtime.LockOSThread before
// Open. A call from another thread fails with ErrWrongThread where it can
// return an error; Disarm and Forget, which return none, panic if the ring
// will not take their requests.
//
// # The io_uring backend's own I/O
//
// Beyond readiness, the io_uring backend can move bytes itself where the
// kernel has multishot RECV and provided-buffer rings (Linux 6.0):
// RingIOOf returns its RingIO (receives into buffers the poller lends the
// kernel, sends from the caller's memory, multishot accepts), or says why
// there is none (the epoll backend, a ring opened without Options.Recv, an
// older kernel). Its tags share the ledger and the rules above; a
// receive's or an accept's tag may report many times before its one end
// (RingIO's tables).
//
// # Batching
//
// Arm, Disarm and Forget on io_uring only queue SQEs; the next Wait hands them
// to the kernel together with the wait in one io_uring_enter (a full
// submission queue is flushed early, and so is a Forget of an fd whose arm
// is still queued). A DEFER_TASKRUN ring posts the completions of a burst of
// readiness 20 per io_uring_enter (Linux 6.13+), so Wait enters once more per
// 20 of those, except after a gathering enter (Gather), which leaves the
// rest to the next Wait's enter. On epoll each Arm changes the interest set with one epoll_ctl
// at once; a Disarm does too unless another tag on the fd keeps the same
// interest. An Edge arm (the caller's promise: armed after EAGAIN, Forget
// before close) on an fd with no tag enabled makes one edge-triggered
// registration; later Edge arms and Disarms on it make no system call (an
// arm without Edge makes one MOD, to poll the level).
//
// An owner that sleeps somewhere else than in Wait (parked on Fd in Go's
// netpoller, as the reactor's loops are) asks Queued before it sleeps: Fd
// announces what the kernel posts, not SQEs still queued nor Events a
// Disarm, Forget or Edge arm decided on the spot, and a Wait(0) hands
// those over. A
// Wait(0) that finds completions already posted and has nothing to submit
// returns them without entering the kernel.
package poller

import (
	"errors"
	"fmt"
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// Event bits. They are poll(2)'s values, which epoll's EPOLL* values equal,
// so both backends pass the kernel's mask through unchanged. Err and Hup are
// always reported when they happen, armed for or not.
const (
	In    uint32 = unix.POLLIN
	Pri   uint32 = unix.POLLPRI
	Out   uint32 = unix.POLLOUT
	Err   uint32 = unix.POLLERR
	Hup   uint32 = unix.POLLHUP
	RdHup uint32 = unix.POLLRDHUP

	// Edge is not an event but a promise with the interest: the caller
	// arms fd only after a nonblocking call on it found it not ready
	// (EAGAIN), and Forgets fd before closing it. The epoll backend then
	// keeps fd registered edge-triggered from arm to arm, which spares an
	// epoll_ctl per arm, as Go's runtime netpoller does; what fired while
	// no tag of fd was armed is kept and decides the next arm at once, so
	// that Ready may be for readiness the caller has used since (its next
	// call finds EAGAIN and arms again). io_uring ignores it: every poll is
	// one POLL_ADD either way. Arm's Event never reports Edge.
	Edge uint32 = 1 << 26

	// ArmMask holds every bit Arm accepts.
	ArmMask = In | Pri | Out | Err | Hup | RdHup | Edge
	// alwaysMask is what the kernel reports whether asked for or not.
	alwaysMask = Err | Hup
)

// InternalBit is the tag bit reserved for the poller's own kernel requests.
const InternalBit uint64 = 1 << 63

// ValidTag reports whether tag may be armed: InternalBit clear and a nonzero
// index (TagIndexBits).
func ValidTag(tag uint64) bool { return tag&TagIndexMask != 0 && tag&InternalBit == 0 }

// Backend names a poller implementation.
type Backend string

// The backends Open accepts. Auto is resolved to Uring or Epoll.
const (
	Auto  Backend = "auto"
	Uring Backend = "uring"
	Epoll Backend = "epoll"
)

// Event is the one report for an armed tag. It holds no pointers, so a
// caller's []Event is filled without allocating.
//
// Exactly one of these holds: Canceled; Errno != 0 (Failed); otherwise Ready,
// with Events the ready mask (never 0).
type Event struct {
	Tag uint64
	// Events is the ready mask: the armed interest plus Err and Hup,
	// intersected with what the kernel reported.
	Events uint32
	// Canceled is set when Disarm or Forget won the race against readiness.
	Canceled bool
	// Errno is the kernel's refusal: EBADF for an fd closed before or
	// while it was armed, EPERM from epoll for a file it cannot poll, ...
	Errno unix.Errno
	// N is the bytes a RingIO's tag received (Ready; 0 at EOF), or, with
	// HasFd, the descriptor its accept opened.
	N int32
	// Buf names the buffer holding them, from Off, when HasBuf: the
	// caller holds them until RingIO.Release.
	Buf     uint16
	HasBuf  bool
	bounded bool // Buf is one of the bounded ring's (uringPoller.bounded)
	Off     uint32
	// HasFd: N is a connection a RingIO accept opened, which the caller
	// now owns: it keeps it or closes it, whatever became of the tag.
	HasFd bool
	// More: the tag stays armed; another Event for it will follow. Only
	// a RingIO's tags set it.
	More bool
}

// Err returns nil for a ready Event, ErrCanceled for a canceled one, and the
// Errno otherwise. It does not allocate.
func (e Event) Err() error {
	switch {
	case e.Canceled:
		return ErrCanceled
	case e.Errno != 0:
		return e.Errno
	}
	return nil
}

// String formats the Event for logs and test failures.
func (e Event) String() string {
	switch {
	case e.Canceled:
		return fmt.Sprintf("{tag %#x canceled}", e.Tag)
	case e.Errno != 0:
		return fmt.Sprintf("{tag %#x failed: %v}", e.Tag, e.Errno)
	}
	if e.HasFd {
		return fmt.Sprintf("{tag %#x accepted fd %d, more %v}", e.Tag, e.N, e.More)
	}
	if e.HasBuf || e.More {
		return fmt.Sprintf("{tag %#x ready %#x, %d bytes in buffer %d, more %v}", e.Tag, e.Events, e.N, e.Buf, e.More)
	}
	return fmt.Sprintf("{tag %#x ready %#x}", e.Tag, e.Events)
}

// Stats are a poller's counters since Open. Syscalls counts every system
// call the owner made for the poller (epoll_ctl, epoll_wait, io_uring_enter,
// eventfd reads); Wake's writes are not included.
type Stats struct {
	Syscalls uint64 // system calls made by the owner
	Arms     uint64 // Arm calls accepted
	Disarms  uint64 // Disarm calls that found an armed tag (Forget included)
	Events   uint64 // Events returned by Wait
	Wakes    uint64 // Wait calls woken by Wake
	Gathered uint64 // looks that asked the kernel to wait for a batch (Gather); some found it posted already
	Stale    uint64 // epoll reports dropped: no registration of that generation
	Dropped  uint64 // tags Close released without an Event
	Armed    int    // tags armed whose Event has not been returned yet
	// Disarming: io_uring requests Disarm or Forget asked to cancel whose
	// end the kernel has not posted yet, each holding its file (Settle
	// waits for none); always 0 on epoll.
	Disarming int
}

// Poller arms one-shot polls and reports one Event per armed tag. See the
// package documentation for the contract every method follows.
type Poller interface {
	// Arm arms a one-shot poll for events (a subset of ArmMask) on fd
	// under tag. After a nil return exactly one Event for tag comes out of
	// Wait; after an error none does.
	Arm(tag uint64, fd int, events uint32) error
	// Disarm asks for tag's poll to be canceled. Its one Event, if not
	// returned yet, is then Canceled or, if readiness won the race, Ready
	// or Failed. Disarm reports whether it made the request: false when
	// tag is not armed, was disarmed already, or its Event is already
	// decided and waiting to be returned (it still will be).
	Disarm(tag uint64) bool
	// Forget disarms every tag armed on fd and forgets fd's registration.
	// Call it before closing fd.
	Forget(fd int)
	// Wait fills evs with Events and returns how many. It blocks up to
	// timeout (negative: without limit, zero: not at all, unless Gather
	// asked this one to wait for a batch) while none is available, and
	// returns 0, nil on timeout and after a Wake. It may
	// also return 0, nil before the timeout without a Wake: epoll_wait
	// interrupted by a signal, or an io_uring wait ended by the backend's
	// own completions (a cancel's). Callers loop on their own clock. An error
	// comes with n == 0: Events already taken for evs are returned with a
	// nil error and the failure is reported by a later Wait, so a caller
	// that stops at an error loses no tag's Event. It panics if evs is
	// empty.
	Wait(evs []Event, timeout time.Duration) (int, error)
	// Wake makes a blocking Wait (or the next one) return; a gathering
	// one (Gather) at its batch or window. Safe from any goroutine; wakes
	// coalesce.
	Wake() error
	// Hold sets how the Waits that follow sleep. Held, they go through
	// the raw system-call entry, which keeps the owner's P (see
	// ring.SubmitAndWaitHeld): for an owner locked to its thread that
	// serves nothing but the poller and waits after nearly every message,
	// where the scheduler's handover of a sleeping thread's P costs more
	// than the wait. A signal ends a held wait early, and Wait returns
	// what it has, maybe nothing, so that the runtime's preemption reaches
	// the owner. Not held (the default), a Wait gives the P up. (A timed
	// held wait on a kernel without IORING_FEAT_EXT_ARG is an ordinary
	// one.)
	Hold(held bool)
	// Gather lets the next Wait, and only that one, batch under load:
	// when it is a look (timeout 0) that has requests to hand to the
	// kernel, no Event in hand and no Wake sent and not yet taken (an
	// owner so woken has a command to run), the io_uring enter
	// that hands them over also waits, up to within, until n completions
	// are posted (those of the requests it submits that complete at once
	// count, and so do the backend's own), keeping the P as a held wait
	// does (on a kernel without IORING_FEAT_EXT_ARG it is an ordinary
	// timed wait), and the Wait returns what came, maybe nothing. An
	// owner that has just served a batch of n and gathers the next one
	// makes one enter and one wake-up per batch instead of about one per
	// message, for a latency of within at most. A Wake sent while it
	// waits ends it only at the batch or at within; a signal ends it
	// early. What the kernel readies beyond the batch waits for the next
	// Wait, which takes it in the enter that hands that turn's requests
	// over (with none, in an enter of its own, or in the one it sleeps
	// in): a busy owner makes one system call a turn. n < 2 or within <= 0 gathers
	// nothing; on epoll, which cannot wait for a count, Gather does
	// nothing.
	Gather(n int, within time.Duration)
	// Settle hands what is queued to the kernel and waits, at most bound,
	// until every request Disarm or Forget asked to cancel has ended; the
	// Events that decides wait for the next Wait. An io_uring request
	// holds its file open until it ends (liburing #932), so a file whose
	// tags were disarmed stays open past close(2) until then: a listening
	// socket goes on completing handshakes. A caller that needs close(2)
	// to release the file at once Forgets fd, Settles, then closes. It
	// fails with ErrNotSettled after bound (the caller then closes anyway,
	// knowing that the file lives on a while), or when the ring fails.
	// epoll holds no file: it returns nil at once.
	Settle(bound time.Duration) error
	// Close releases the poller (see the package documentation). It is
	// idempotent.
	Close() error
	// Stats returns the counters.
	Stats() Stats
	// Backend reports Uring or Epoll.
	Backend() Backend
	// Fd returns a descriptor that polls readable (POLLIN, edge or level)
	// when a non-blocking Wait may have Events to return: the epoll fd, or
	// the ring fd, which the kernel marks readable when it posts
	// completions. An owner that waits in another poller (Go's runtime
	// netpoller) instead of blocking in Wait parks on it. It stays the
	// poller's: never close it. A ring set up DEFER_TASKRUN posts
	// completions only when its owner enters the kernel, so park on it
	// only with another setup (UringCoop, UringPlain).
	Fd() int
	// Queued reports whether the next Wait has work that Fd cannot
	// announce: requests that only a Wait hands to the kernel (io_uring
	// SQEs from Arm, Disarm, Forget) or Events already decided without the
	// kernel (a Disarm or Forget that epoll carried out at once, an Edge
	// arm that what the registration kept decided). An owner
	// parked on Fd calls Wait(0) before it sleeps while this holds, or
	// those requests and Events wait for an unrelated wake-up.
	Queued() bool
}

// ErrCanceled is Event.Err for a tag whose poll was canceled.
var ErrCanceled = errors.New("poller: poll canceled")

// ErrNotSettled is Settle's error when the kernel has not ended every
// canceled request within its bound.
var ErrNotSettled = errors.New("poller: canceled requests still in the kernel")

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("poller: closed")

// ErrBadTag refuses a tag whose index (TagIndexBits) is zero or that has
// InternalBit set.
var ErrBadTag = errors.New("poller: tag has a zero index or uses the internal bit")

// ErrTagInUse refuses a tag whose index another armed tag holds, or that is
// itself still armed (its Event not yet decided). Arming a tag again before
// its decided Event came out of Wait is not refused but is a caller bug:
// both Events would carry the same tag.
var ErrTagInUse = errors.New("poller: tag already armed")

// ErrBadFd refuses a file descriptor the kernel cannot name: negative, or
// beyond the 32 bits of its int (truncated, it would name another fd).
var ErrBadFd = errors.New("poller: file descriptor out of range")

// ErrBadEvents refuses an interest with bits outside ArmMask.
var ErrBadEvents = errors.New("poller: events outside ArmMask")

// ErrTooManyTags refuses an epoll Arm that would make 65,536 tags armed at
// once on one fd ask for one event: the backend counts them in 16 bits, a
// record it keeps for every fd number it sees.
var ErrTooManyTags = errors.New("poller: too many tags armed on one fd for one event")

// ErrWrongThread reports a single-issuer io_uring used from an OS thread
// other than the one that opened it (the kernel answers EEXIST).
var ErrWrongThread = errors.New("poller: single-issuer io_uring used from another OS thread")

// checkArm validates Arm's arguments the same way for both backends;
// maxFd is the poller's FdLimit.
func checkArm(tag uint64, fd int, events uint32, maxFd int) error {
	switch {
	case !ValidTag(tag):
		return fmt.Errorf("%w: %#x", ErrBadTag, tag)
	case !validFd(fd) || fd >= maxFd && !FdOpen(fd):
		return fmt.Errorf("%w: %d (at or past RLIMIT_NOFILE %d, and not open)", ErrBadFd, fd, maxFd)
	case events&^ArmMask != 0:
		return fmt.Errorf("%w: %#x", ErrBadEvents, events)
	}
	return nil
}

// FdLimit is where descriptor numbers end in practice: the hard
// RLIMIT_NOFILE, below which the kernel numbers every new fd (it numbers
// below the soft limit, at most the hard one); 1<<20 where getrlimit
// fails. Tables kept by fd number grow to the largest number armed, so Arm
// takes a number at or past it only if it names an open descriptor (one
// opened before the limit was lowered), which FdOpen asks the kernel:
// otherwise one Arm on fd 1<<26 kept 258 MiB for a request bound to fail.
// (fs.nr_open, the most the limit may be raised to, is 2^30 on systemd
// hosts: no bound at all.)
func FdLimit() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 1 << 20
	}
	return int(min(rl.Max, math.MaxInt32))
}

// FdOpen reports whether fd names an open descriptor of this process: the
// check for a number at or past FdLimit, one system call.
func FdOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err != unix.EBADF
}

// validFd reports whether fd is a number the kernel's 32-bit int can hold.
func validFd(fd int) bool { return fd >= 0 && fd <= math.MaxInt32 }

// readyMask is what a poll armed for interest reports when the kernel says
// mask: the interest plus the always-reported bits.
func readyMask(interest, mask uint32) uint32 { return mask & (interest | alwaysMask) }

// durationMs converts Wait's timeout to epoll_wait's milliseconds, rounding
// up so that a short timeout does not become a busy poll.
func durationMs(d time.Duration) int {
	switch {
	case d < 0:
		return -1
	case d == 0:
		return 0
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > 1<<31-1 {
		return 1<<31 - 1
	}
	return int(ms)
}
